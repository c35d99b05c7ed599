"""Operator accounts: argon2 password hashes, login with lockout, login tokens.

Hashing runs in the default executor (argon2 costs tens of milliseconds of CPU)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import string
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..config import OperatorsConfig
from ..db import OperatorRecord, Repository
from ..errors import AuthError, InvalidCredentials, ValidationError
from ..tokens import new_token, token_hash

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# compared against when the username is unknown, so that timing does not tell
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


@dataclass(frozen=True)
class Login:
    token: str
    """Handed to the client once (cookie or bearer token); stored hashed."""
    operator: OperatorRecord
    expires_at: float


def generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


class Accounts:
    def __init__(self, repo: Repository, config: OperatorsConfig) -> None:
        self._repo = repo
        self._config = config

    async def add(self, username: str, password: str, role: str, now: float) -> int:
        if not USERNAME.match(username):
            raise ValidationError(
                "username: 2-64 characters, lower-case letters, digits, '.', '_', '-'",
                code="invalid_username",
            )
        if len(password) < MIN_PASSWORD or len(password) > 256:
            raise ValidationError(
                f"password: at least {MIN_PASSWORD} characters", code="weak_password"
            )
        hashed = await asyncio.get_running_loop().run_in_executor(None, _hasher.hash, password)
        operator_id = await self._repo.add_operator(username, hashed, role, now)
        await self._repo.append_audit(
            now,
            "account_created",
            "system",
            f"operator:{operator_id}",
            {"username": username, "role": role},
        )
        return operator_id

    async def login(self, username: str, password: str, now: float) -> Login:
        """Raises :class:`InvalidCredentials` (also for an unknown user) or
        :class:`AuthError` with code ``account_locked``."""
        loop = asyncio.get_running_loop()
        operator = await self._repo.find_operator(username=username)
        if operator is None:
            await loop.run_in_executor(None, _verify, _DUMMY_HASH, password)
            await self._repo.append_audit(
                now, "login_failed", "unknown", "", {"username": username[:64], "why": "unknown"}
            )
            raise InvalidCredentials()
        actor = f"operator:{operator.id}"
        if operator.locked_until is not None and operator.locked_until > now:
            await self._repo.append_audit(now, "login_failed", actor, "", {"why": "locked"})
            raise AuthError("too many failed logins; try again later", code="account_locked")
        if not await loop.run_in_executor(None, _verify, operator.password_hash, password):
            locked_until = None
            if operator.failed_logins + 1 >= self._config.max_failed_logins:
                locked_until = now + self._config.lockout_minutes * 60
                logger.warning("operator %d locked after failed logins", operator.id)
            await self._repo.record_login_failure(operator.id, locked_until)
            why = "locked now" if locked_until is not None else "password"
            await self._repo.append_audit(now, "login_failed", actor, "", {"why": why})
            raise InvalidCredentials()
        rehash = None
        if _hasher.check_needs_rehash(operator.password_hash):
            rehash = await loop.run_in_executor(None, _hasher.hash, password)
        token = new_token()
        expires_at = now + self._config.login_ttl_hours * 3600
        await self._repo.add_login(
            operator.id, token_hash(token), now, expires_at, password_hash=rehash
        )
        await self._repo.append_audit(now, "login", actor, "", {"role": operator.role})
        logger.info("operator %d logged in", operator.id)
        return Login(token, operator, expires_at)

    async def authenticate(self, token: str | None, now: float) -> OperatorRecord:
        """The operator a login token belongs to. Raises :class:`AuthError`."""
        if not token or len(token) > 128:
            raise AuthError("log in first", code="unauthorized")
        operator = await self._repo.find_login(token_hash(token), now)
        if operator is None:
            raise AuthError("your login has expired; log in again", code="unauthorized")
        return operator

    async def logout(self, token: str) -> None:
        await self._repo.delete_login(token_hash(token))


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
