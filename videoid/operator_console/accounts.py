"""Operator accounts: argon2 password hashes, throttled logins, login tokens.

A login is counted in the database before its password is hashed, per username and
per client address (:mod:`videoid.db.login_attempts`); hashing runs in a bounded pool
of its own (:mod:`.hashing_pool`). An unknown username takes the same path as a known
one: counted under its own key, hashed at the same cost, answered with the same codes,
and audited without what was typed."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import string
from dataclasses import dataclass

from ..config import OperatorsConfig
from ..db import OperatorRecord, Repository
from ..db.login_attempts import AttemptLimit, LoginAttempts
from ..errors import AuthError, InvalidCredentials, LoginThrottled, ValidationError
from ..tokens import new_token, token_hash
from .hashing_pool import HashingPool

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
FORGET_SECONDS = 24 * 3600.0
"""Counted login attempts older than this no longer count."""
FORGET_EVERY_SECONDS = 600.0
"""How often rows of forgotten attempts are deleted."""


@dataclass(frozen=True)
class Login:
    token: str
    """Handed to the client once (cookie or bearer token); stored hashed."""
    operator: OperatorRecord
    expires_at: float


def generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def delays(config: OperatorsConfig) -> tuple[float, ...]:
    """The waits after the allowance: ``login_delay_seconds``, doubling, up to
    ``lockout_minutes`` (the last one repeats)."""
    longest = config.lockout_minutes * 60
    out = [min(config.login_delay_seconds, longest)]
    while out[-1] < longest and len(out) < 32:
        out.append(min(out[-1] * 2 or longest, longest))
    return tuple(out)


def client_key(address: str | None) -> str:
    """What one client address is counted as: IPv4 as is, IPv6 by its /64 (one
    customer's whole network), anything unreadable as one unknown."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Accounts:
    def __init__(
        self,
        repo: Repository,
        config: OperatorsConfig,
        *,
        key: bytes | None = None,
    ) -> None:
        """``key`` makes the keyed hashes under which usernames and addresses are
        counted (the same in every process sharing the database); without one, a key
        of this process only."""
        self._repo = repo
        self._config = config
        self._key = key or secrets.token_bytes(32)
        self._delays = delays(config)
        self.attempts = LoginAttempts(repo.engine, FORGET_SECONDS)
        self.hashing = HashingPool(config.hash_workers, config.hash_queue)
        self._forgotten_at = 0.0

    async def close(self) -> None:
        await self.hashing.close()

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
        hashed = await self.hashing.hash(password)
        operator_id = await self._repo.add_operator(username, hashed, role, now)
        await self._repo.append_audit(
            now,
            "account_created",
            "system",
            f"operator:{operator_id}",
            {"username": username, "role": role},
        )
        return operator_id

    async def login(
        self, username: str, password: str, now: float, *, address: str | None = None
    ) -> Login:
        """Raises :class:`InvalidCredentials` (also for an unknown user),
        :class:`LoginThrottled` (before any hashing, for known and unknown usernames
        alike) or :class:`~videoid.errors.ServerBusy` (too many hashes waiting)."""
        limits = self._limits(username, address)
        wait_seconds = await self.attempts.take(limits, now)
        if wait_seconds > 0:
            raise LoginThrottled(
                f"too many login attempts; try again in {max(1, round(wait_seconds))} seconds"
            )
        await self._forget_now_and_then(now)
        operator = await self._repo.find_operator(username=username)
        # an unknown username is hashed too (against nobody's hash), at the same cost
        matches = await self.hashing.verify(
            operator.password_hash if operator is not None else None, password
        )
        if operator is None:  # what was typed is not kept: it may be a password
            await self._repo.append_audit(now, "login_failed", "unknown", "", {"why": "unknown"})
            raise InvalidCredentials()
        if not matches:
            actor = f"operator:{operator.id}"
            await self._repo.append_audit(now, "login_failed", actor, "", {"why": "password"})
            raise InvalidCredentials()
        await self.attempts.give_back([limit.key for limit in limits])
        rehash = None
        if self.hashing.needs_rehash(operator.password_hash):
            rehash = await self.hashing.hash(password)
        token = new_token()
        expires_at = now + self._config.login_ttl_hours * 3600
        await self._repo.add_login(
            operator.id, token_hash(token), now, expires_at, password_hash=rehash
        )
        actor = f"operator:{operator.id}"
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

    def _limits(self, username: str, address: str | None) -> list[AttemptLimit]:
        # the address first: every attempt takes the rows in the same order, so that
        # two attempts never wait for each other's row (no deadlock on PostgreSQL)
        return [
            AttemptLimit(
                self._keyed(f"a:{client_key(address)}"),
                self._config.address_failed_logins,
                self._delays,
            ),
            AttemptLimit(
                self._keyed(f"u:{username.strip().lower()}"),
                self._config.max_failed_logins,
                self._delays,
            ),
        ]

    def _keyed(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    async def _forget_now_and_then(self, now: float) -> None:
        if now - self._forgotten_at >= FORGET_EVERY_SECONDS:
            self._forgotten_at = now
            await self.attempts.forget(now)
