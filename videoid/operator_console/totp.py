"""Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and
recovery codes for the staff's second factor. Pure: every function takes ``now``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1
"""Steps accepted on either side of the current one (a clock a little off)."""
SECRET_BYTES = 20
"""160 bits, the length RFC 4226 recommends for HMAC-SHA-1."""
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # nothing read two ways


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def secret_text(secret: bytes) -> str:
    """The secret as authenticator apps take it: base32 without padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def secret_from_text(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def step_at(now: float) -> int:
    return int(now // STEP_SECONDS)


def code_at(secret: bytes, step: int) -> str:
    """The code of one time step (RFC 4226 dynamic truncation)."""
    digest = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def matching_step(secret: bytes, code: str, now: float) -> int | None:
    """The step within ``WINDOW`` of ``now`` whose code ``code`` is, or None. Every step
    of the window is compared, in constant time, whatever matches first."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = step_at(now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def looks_like_totp(code: str) -> bool:
    return len(code) == DIGITS and code.isdigit()


def otpauth_uri(secret: bytes, account: str, issuer: str) -> str:
    """The ``otpauth://totp/`` URI an authenticator app reads from a QR code."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {
            "secret": secret_text(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def new_recovery_codes() -> list[str]:
    """Ten codes of 12 characters (about 59 bits each), shown as ``xxxx-xxxx-xxxx``."""
    out = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
        out.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return out


def normal_recovery_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def recovery_hash(operator_id: int, code: str) -> str:
    """What is stored of a recovery code: its SHA-256 with the account's id (the codes
    are random and long, so a fast hash is enough; the id keeps one account's codes
    from matching another's)."""
    text = f"videoid recovery {operator_id} {normal_recovery_code(code)}"
    return hashlib.sha256(text.encode()).hexdigest()
