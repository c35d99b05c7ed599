"""The Italian tax code (codice fiscale) of a person: shape and check character.

Sixteen characters: surname (3 letters), given name (3), year (2 digits), month (a
letter), day (2 digits, +40 for women), place (a letter and 3 digits) and a check
letter computed from the first fifteen. Where two people would share a code, digits
are replaced by letters (omocodia: L M N P Q R S T U V for 0-9), which the shape
accepts.
"""

from __future__ import annotations

import re

_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (
                1,
                0,
                5,
                7,
                9,
                13,
                15,
                17,
                19,
                21,
                2,
                4,
                18,
                20,
                11,
                3,
                6,
                8,
                12,
                14,
                16,
                10,
                22,
                25,
                24,
                23,
            ),
            strict=True,
        )
    ),
}
_EVEN = {**{str(d): d for d in range(10)}, **{chr(65 + i): i for i in range(26)}}
_DIGIT = "[0-9LMNPQRSTUV]"
SHAPE = re.compile(rf"^[A-Z]{{6}}{_DIGIT}{{2}}[ABCDEHLMPRST]{_DIGIT}{{2}}[A-Z]{_DIGIT}{{3}}[A-Z]$")


def check_character(first15: str) -> str:
    total = sum((_ODD if i % 2 == 0 else _EVEN)[c] for i, c in enumerate(first15))
    return chr(65 + total % 26)


def valid_tax_code(code: str) -> bool:
    code = code.strip().upper()
    return bool(SHAPE.match(code)) and check_character(code[:15]) == code[15]
