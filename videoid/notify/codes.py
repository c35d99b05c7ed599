"""One-time codes sent by SMS: six digits, kept only as an Argon2id hash, valid for a
while, single use, a limited number of attempts, and bound to what they are for (a
call, or the digest of the document a signature will cover): a code issued for one
binding never redeems another. The counters are in the database, so reconnecting
resets nothing, and an attempt is consumed there *before* the code is checked, in one
conditional statement: N parallel attempts check at most the limit (R17)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import argon2

from ..clock import Clock
from ..db import Repository
from ..db.repository import CodeRecord
from ..errors import RateLimited, ValidationError

_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class OtpError(ValidationError):
    code = "otp_wrong"
    status = 422


@dataclass(frozen=True)
class IssuedCode:
    code: str
    """To send, then forget: it is stored only hashed."""
    code_id: int
    expires_at: float


Record = Callable[[dict[str, Any]], Awaitable[None]]


class OneTimeCodes:
    def __init__(self, repo: Repository, clock: Clock) -> None:
        self._repo, self._clock = repo, clock

    async def issue(
        self,
        session_id: str,
        purpose: str,
        binding: str,
        valid_seconds: float,
        *,
        max_sends: int,
        per_seconds: float = 600.0,
    ) -> IssuedCode:
        """A new code (earlier ones of the purpose stop counting); at most ``max_sends``
        in ``per_seconds``."""
        now = self._clock.now()
        if await self._repo.count_codes(session_id, purpose, now - per_seconds) >= max_sends:
            raise _send_limit()  # before the hash's cost; the limit itself is held below
        code = f"{secrets.randbelow(10**6):06d}"
        code_hash = await asyncio.to_thread(_hasher.hash, code)
        expires = now + valid_seconds
        code_id = await self._repo.add_code(
            session_id, purpose, binding, code_hash, now, expires,
            max_sends=max_sends, since=now - per_seconds,
        )  # fmt: skip
        if code_id is None:  # parallel requests took the last sends meanwhile
            raise _send_limit()
        return IssuedCode(code, code_id, expires)

    async def redeem(
        self,
        session_id: str,
        purpose: str,
        binding: str,
        code: str,
        max_attempts: int,
        record: Record | None = None,
    ) -> None:
        """Spend the latest code of ``purpose`` if ``code`` is it and it is bound to
        ``binding``; else raise :class:`OtpError` with a stable code. ``record`` is told
        of each event (expired, wrong, matched) to keep as evidence (never the code)."""
        found = await self.check(session_id, purpose, binding, code, max_attempts, record)
        await self.spend(found)
        if record is not None:
            await record({"event": "matched"})

    async def check(
        self,
        session_id: str,
        purpose: str,
        binding: str,
        code: str,
        max_attempts: int,
        record: Record | None = None,
    ) -> CodeRecord:
        """Like :meth:`redeem`, but leave the code unspent: the caller spends it with
        :meth:`spend` once whatever else it asks for (a PIN) is right too. Each call
        consumes one of the code's ``max_attempts``, before the code is compared."""
        if not (isinstance(code, str) and len(code) == 6 and code.isascii() and code.isdigit()):
            raise ValidationError("the code has 6 digits", code="invalid_code")

        async def note(event: dict[str, Any]) -> None:
            if record is not None:
                await record(event)

        now = self._clock.now()
        found = await self._repo.latest_code(session_id, purpose)
        if found is None:
            raise OtpError("no code was sent", code="otp_not_sent")
        if found.binding != binding:
            raise OtpError(
                "this code was sent for another document; ask for a new one",
                code="otp_wrong_binding",
            )
        attempts = await self._repo.count_code_attempt(found.id, max_attempts, now)
        if attempts is None:  # nothing consumed, nothing compared: say why
            if found.used_at is not None:
                raise OtpError("this code was already used", code="otp_used")
            if found.expires_at <= now:
                await note({"event": "expired"})
                raise OtpError("the code has expired; ask for a new one", code="otp_expired")
            again = await self._repo.latest_code(session_id, purpose)
            if again is not None and again.id == found.id and again.used_at is not None:
                raise OtpError("this code was already used", code="otp_used")
            raise OtpError("too many wrong codes; ask for a new one", code="otp_locked")
        if not await asyncio.to_thread(_matches, found.code_hash, code):
            left = max_attempts - attempts
            await note({"event": "wrong", "attempts_left": left})
            if left <= 0:
                raise OtpError("too many wrong codes; ask for a new one", code="otp_locked")
            raise OtpError(
                f"wrong code; {left} attempt{'s' if left > 1 else ''} left",
                code="otp_wrong",
                attempts_left=left,
            )
        return found

    async def spend(self, found: CodeRecord) -> None:
        """Spend a code :meth:`check` matched, once: a second caller gets ``otp_used``."""
        if not await self._repo.use_code(found.id, self._clock.now()):
            raise OtpError("this code was already used", code="otp_used")


def _matches(code_hash: str, code: str) -> bool:
    try:
        return bool(_hasher.verify(code_hash, code))
    except argon2.exceptions.VerificationError:
        return False


def _send_limit() -> RateLimited:
    return RateLimited(
        "enough codes were sent; wait before asking for another", code="otp_send_limit"
    )
