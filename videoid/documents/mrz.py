"""Machine readable zones (ICAO Doc 9303): parsing and check digits, with no I/O.

:func:`parse_mrz` takes the text lines of a TD1 (3 x 30), TD2 (2 x 36) or TD3 (2 x 44)
zone and returns :class:`MrzData` holding every field and the result of every check
digit, including the composite. It never guesses: reading text from a photo and fixing
OCR confusions is :mod:`videoid.documents.reader`'s job.
"""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import ValidationError

MRZ_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
FORMATS: dict[tuple[int, int], Literal["TD1", "TD2", "TD3"]] = {
    (3, 30): "TD1",
    (2, 36): "TD2",
    (2, 44): "TD3",
}
_WEIGHTS = (7, 3, 1)


class MrzError(ValidationError):
    """The text is not a machine readable zone of a known format."""

    code = "mrz_unreadable"


def char_value(char: str) -> int:
    """The value of one MRZ character in a check digit: digits as such, A=10 … Z=35,
    the filler ``<`` as 0."""
    if char.isdigit():
        return ord(char) - 48
    if "A" <= char <= "Z":
        return ord(char) - 55
    if char == "<":
        return 0
    raise MrzError(f"{char!r} is not an MRZ character")


def check_digit(field: str) -> str:
    """The ICAO 9303 check digit of ``field`` (weights 7, 3, 1 repeating, modulo 10)."""
    return str(sum(char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(field)) % 10)


@dataclass(frozen=True)
class Check:
    """One check digit: which field, the digit printed and whether it matches."""

    name: str
    field: str
    printed: str
    expected: str

    @property
    def ok(self) -> bool:
        return self.printed == self.expected


@dataclass(frozen=True)
class MrzData:
    format: Literal["TD1", "TD2", "TD3"]
    document_code: str
    issuing_state: str
    document_number: str
    surname: str
    given_names: str
    nationality: str
    date_of_birth: str
    """ISO date (YYYY-MM-DD), or empty when the zone's date is not a real date."""
    sex: Literal["F", "M", "X"]
    date_of_expiry: str
    optional_data: str
    optional_data_2: str
    names_truncated: bool
    checks: tuple[Check, ...]
    lines: tuple[str, ...]

    @property
    def checks_ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def expired(self, today: datetime.date) -> bool:
        return not self.date_of_expiry or datetime.date.fromisoformat(self.date_of_expiry) < today

    def valid(self, today: datetime.date) -> bool:
        """Every check digit matches, both dates are real and the document has not expired."""
        return self.checks_ok and bool(self.date_of_birth) and not self.expired(today)

    def to_json(self, today: datetime.date | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["lines"] = list(self.lines)
        out["checks"] = [{**asdict(c), "ok": c.ok} for c in self.checks]
        out["checks_ok"] = self.checks_ok
        if today is not None:
            out["expired"] = self.expired(today)
            out["valid"] = self.valid(today)
        return out


def _date(raw: str, *, birth: bool, today: datetime.date) -> str:
    """YYMMDD to an ISO date. Birth dates are never in the future; expiry dates are
    taken in the century that puts them closest to today."""
    if len(raw) != 6 or not raw.isdigit():
        return ""
    yy, mm, dd = int(raw[:2]), int(raw[2:4]), int(raw[4:])
    century = today.year // 100 * 100
    if birth:
        year = century + yy if century + yy <= today.year else century - 100 + yy
    else:
        candidates = (century - 100 + yy, century + yy, century + 100 + yy)
        year = min(candidates, key=lambda y: abs(y - today.year))
    try:
        return datetime.date(year, mm, dd).isoformat()
    except ValueError:
        return ""


def _names(field: str) -> tuple[str, str, bool]:
    truncated = not field.endswith("<")
    surname, _, given = field.partition("<<")
    return (
        surname.replace("<", " ").strip(),
        " ".join(part for part in given.replace("<", " ").split()),
        truncated,
    )


def _number(number: str, printed_check: str, overflow: str) -> tuple[str, str, str, str]:
    """Document numbers longer than nine characters: the check digit position holds
    ``<`` and the rest follows in the optional data, ended by the real check digit.
    Returns the full number, its field as checked, the printed check digit and the
    optional data that is left."""
    if printed_check == "<" and overflow[:1] not in ("", "<"):
        extra = overflow.split("<", 1)[0]
        if len(extra) >= 2:
            full = number + extra[:-1]
            return full, full, extra[-1], overflow[len(extra) :]
    return number.rstrip("<"), number, printed_check, overflow


def _sex(char: str) -> Literal["F", "M", "X"]:
    return "F" if char == "F" else "M" if char == "M" else "X"


def normalize_lines(lines: Sequence[str]) -> tuple[str, ...]:
    out = tuple(line.strip().upper().replace(" ", "") for line in lines if line.strip())
    shape = (len(out), len(out[0]) if out else 0)
    if shape not in FORMATS or any(len(line) != shape[1] for line in out):
        raise MrzError(
            "a machine readable zone has 3 lines of 30, 2 of 36 or 2 of 44 characters; got "
            + (" / ".join(str(len(line)) for line in out) or "nothing")
        )
    bad = sorted({c for line in out for c in line} - MRZ_CHARS)
    if bad:
        raise MrzError(f"characters not allowed in a machine readable zone: {''.join(bad)}")
    return out


def parse_mrz(lines: Sequence[str], today: datetime.date | None = None) -> MrzData:
    """Parse the zone's lines. ``today`` decides the century of two-digit years."""
    today = today or datetime.date.today()
    rows = normalize_lines(lines)
    fmt = FORMATS[(len(rows), len(rows[0]))]
    checks: list[Check] = []

    def check(name: str, field: str, printed: str) -> None:
        # A filler where a check digit may be omitted (an empty optional field) counts as 0.
        checks.append(Check(name, field, "0" if printed == "<" else printed, check_digit(field)))

    if fmt == "TD1":
        l1, l2, l3 = rows
        number, number_field, number_check, optional = _number(l1[5:14], l1[14], l1[15:30])
        check("document_number", number_field, number_check)
        check("date_of_birth", l2[0:6], l2[6])
        check("date_of_expiry", l2[8:14], l2[14])
        check("composite", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29])
        surname, given, truncated = _names(l3)
        dob, sex, doe, nationality = l2[0:6], l2[7], l2[8:14], l2[15:18]
        optional_2 = l2[18:29]
        code, state = l1[0:2], l1[2:5]
    else:
        l1, l2 = rows
        if fmt == "TD3":  # the optional field is the personal number, with its own check
            number, number_field, number_check = l2[0:9].rstrip("<"), l2[0:9], l2[9]
            optional = l2[28:42]
        else:
            number, number_field, number_check, optional = _number(l2[0:9], l2[9], l2[28:35])
        check("document_number", number_field, number_check)
        check("date_of_birth", l2[13:19], l2[19])
        check("date_of_expiry", l2[21:27], l2[27])
        if fmt == "TD3":
            check("personal_number", l2[28:42], l2[42])
        # The composite covers the number, birth and expiry dates with their check
        # digits, and the optional data (with its check digit on a TD3).
        check("composite", l2[0:10] + l2[13:20] + l2[21:-1], l2[-1])
        surname, given, truncated = _names(l1[5:])
        dob, sex, doe, nationality = l2[13:19], l2[20], l2[21:27], l2[10:13]
        optional_2 = ""
        code, state = l1[0:2], l1[2:5]
    return MrzData(
        format=fmt,
        document_code=code.replace("<", ""),
        issuing_state=state.replace("<", ""),
        document_number=number,
        surname=surname,
        given_names=given,
        nationality=nationality.replace("<", ""),
        date_of_birth=_date(dob, birth=True, today=today),
        sex=_sex(sex),
        date_of_expiry=_date(doe, birth=False, today=today),
        optional_data=optional.strip("<"),
        optional_data_2=optional_2.strip("<"),
        names_truncated=truncated,
        checks=tuple(checks),
        lines=rows,
    )


_TRANSLITERATION = str.maketrans(
    {
        "Ä": "AE",
        "Ö": "OE",
        "Ü": "UE",
        "ß": "SS",
        "Å": "AA",
        "Æ": "AE",
        "Ø": "OE",
        "Ł": "L",
        "-": "<",
        " ": "<",
        "'": "",
        ".": "",
        ",": "",
    }
)


def mrz_name(text: str) -> str:
    """A name as the zone writes it: upper case, transliterated (ICAO 9303 part 3),
    spaces and hyphens as fillers."""
    text = text.upper().translate(_TRANSLITERATION)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if c in MRZ_CHARS)


def build_mrz(
    fmt: Literal["TD1", "TD2", "TD3"],
    *,
    document_code: str,
    issuing_state: str,
    document_number: str,
    surname: str,
    given_names: str,
    nationality: str,
    date_of_birth: datetime.date,
    sex: str,
    date_of_expiry: datetime.date,
    optional_data: str = "",
) -> tuple[str, ...]:
    """The lines of a zone with correct check digits (used to make test documents)."""

    def pad(text: str, width: int) -> str:
        return text[:width].ljust(width, "<")

    names = pad(mrz_name(surname) + "<<" + mrz_name(given_names), 30 if fmt == "TD1" else 39)
    dob = date_of_birth.strftime("%y%m%d")
    doe = date_of_expiry.strftime("%y%m%d")
    number = mrz_name(document_number)
    head = pad(document_code, 2) + pad(issuing_state, 3)
    if fmt == "TD1":
        if len(number) > 9:
            num_field = number[:9] + "<"
            optional = pad(number[9:] + check_digit(number) + "<" + optional_data, 15)
        else:
            num_field = pad(number, 9) + check_digit(pad(number, 9))
            optional = pad(optional_data, 15)
        l1 = head + num_field + optional
        l2 = dob + check_digit(dob) + sex + doe + check_digit(doe) + pad(nationality, 3)
        l2 += pad("", 11)
        l2 += check_digit(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
        return l1, l2, names
    num_field = pad(number, 9) + check_digit(pad(number, 9))
    l1 = head + names
    l2 = num_field + pad(nationality, 3) + dob + check_digit(dob) + sex + doe + check_digit(doe)
    if fmt == "TD3":
        personal = pad(optional_data, 14)
        l2 += personal + ("<" if not optional_data else check_digit(personal))
    else:
        l1 = l1[:36]
        l2 += pad(optional_data, 7)
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:])
    return l1, l2
