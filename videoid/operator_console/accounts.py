"""Operator accounts: argon2 password hashes, throttled logins, login tokens.

A login is counted in the database before its password is hashed, per username and
per client address (:mod:`videoid.db.login_attempts`); hashing runs in a bounded pool
of its own (:mod:`.hashing_pool`). An unknown username takes the same path as a known
one: counted under its own key, hashed at the same cost, answered with the same codes,
and audited without what was typed.

A right password gives no login yet but a challenge: the login comes with a TOTP code
(:mod:`.totp`) or a recovery code, counted like a password before it is checked; an
account without a second factor enrols one first (its secret wrapped by the master
key). A login unused for ``idle_minutes`` ends; a decision needs a second-factor proof
of the login at most ``reauth_minutes`` old (:meth:`Accounts.require_recent_proof`)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import OperatorsConfig
from ..db import OperatorRecord, Repository
from ..db.login_attempts import AttemptLimit, LoginAttempts
from ..db.staff_factors import StaffFactors
from ..errors import (
    AuthError,
    Forbidden,
    InvalidCredentials,
    LoginThrottled,
    StorageError,
    ValidationError,
)
from ..storage.envelope import KeyWrapper
from ..tokens import new_token, token_hash
from . import totp
from .hashing_pool import HashingPool

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
FORGET_SECONDS = 24 * 3600.0
"""Counted login attempts older than this no longer count."""
FORGET_EVERY_SECONDS = 600.0
"""How often rows of forgotten attempts are deleted."""
CHALLENGE_SECONDS = 300.0
"""How long after the password the second factor (or the enrolment) may come."""
TOUCH_EVERY_SECONDS = 60.0
"""A login's last use is written at most this often (kept in memory in between)."""


@dataclass(frozen=True)
class Login:
    token: str
    """Handed to the client once (cookie or bearer token); stored hashed."""
    operator: OperatorRecord
    expires_at: float
    recovery_codes: tuple[str, ...] = ()
    """After an enrolment: the ten recovery codes, shown this once."""


@dataclass(frozen=True)
class PasswordPassed:
    """The password was right; the second factor comes next (no login yet)."""

    challenge: str
    """Handed to the client once, for :meth:`Accounts.second_factor`; stored hashed."""
    second_factor: str
    """``totp``: give a code (or a recovery code); ``enrol``: confirm a new secret."""
    expires_at: float
    operator: OperatorRecord
    otpauth_uri: str = ""
    """``enrol``: the new secret for an authenticator app (shown as a QR code)."""
    secret: str = ""
    """``enrol``: the same secret in base32, to type in by hand."""


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
        wrapper: KeyWrapper | None = None,
    ) -> None:
        """``key`` makes the keyed hashes under which usernames and addresses are
        counted (the same in every process sharing the database); without one, a key
        of this process only. ``wrapper`` (the master key) wraps the TOTP secrets;
        without one no second factor can be enrolled or checked (the CLI's accounts)."""
        self._repo = repo
        self._wrapper = wrapper
        self.factors = StaffFactors(repo.engine)
        self._seen: dict[str, float] = {}
        """Login token hash -> last use, between the writes of :data:`TOUCH_EVERY_SECONDS`."""
        self._written: dict[str, float] = {}
        """Login token hash -> the last use written to the database by this process."""
        self.revoked: Callable[[int], Awaitable[None]] | None = None
        """Called with an account's id after its logins were ended (drops its sockets)."""
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
    ) -> PasswordPassed:
        """The password step. Raises :class:`InvalidCredentials` (also for an unknown
        user), :class:`LoginThrottled` (before any hashing, for known and unknown
        usernames alike), :class:`Forbidden` ``account_disabled`` (only after the
        right password) or :class:`~videoid.errors.ServerBusy` (too many hashes
        waiting). No login yet: :meth:`second_factor` gives it."""
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
        actor = f"operator:{operator.id}"
        if not matches:
            await self._repo.append_audit(now, "login_failed", actor, "", {"why": "password"})
            raise InvalidCredentials()
        await self.attempts.give_back([limit.key for limit in limits])
        if operator.disabled:
            await self._repo.append_audit(now, "login_failed", actor, "", {"why": "disabled"})
            raise Forbidden("this account is disabled", code="account_disabled")
        if self.hashing.needs_rehash(operator.password_hash):
            await self.factors.set_password_hash(operator.id, await self.hashing.hash(password))
        challenge = new_token()
        expires_at = now + CHALLENGE_SECONDS
        if operator.enrolled:
            await self.factors.add_challenge(
                token_hash(challenge), operator.id, "totp", None, now, expires_at
            )
            await self._repo.append_audit(now, "password_passed", actor, "", {})
            return PasswordPassed(challenge, "totp", expires_at, operator)
        secret = totp.new_secret()
        wrapped = self._wrap(operator.id, secret)
        await self.factors.add_challenge(
            token_hash(challenge), operator.id, "enrol", wrapped, now, expires_at
        )
        await self._repo.append_audit(now, "password_passed", actor, "", {"enrol": True})
        return PasswordPassed(
            challenge,
            "enrol",
            expires_at,
            operator,
            totp.otpauth_uri(secret, operator.username, self._config.totp_issuer),
            totp.secret_text(secret),
        )

    async def second_factor(
        self, challenge: str, code: str, now: float, *, address: str | None = None
    ) -> Login:
        """The second step: a TOTP code (or a recovery code) for a ``totp``
        challenge, the new secret's code for an ``enrol`` one. Raises
        :class:`AuthError` ``challenge_expired``, ``invalid_code``,
        :class:`LoginThrottled` (wrong codes are counted like wrong passwords)."""
        found = await self.factors.challenge(token_hash(challenge), now) if challenge else None
        if found is None:
            raise AuthError("the login step has expired; log in again", code="challenge_expired")
        operator_id = found.operator_id
        actor = f"operator:{operator_id}"
        codes: tuple[str, ...] = ()
        if found.kind == "enrol":
            assert found.secret is not None
            secret = self._unwrap(operator_id, found.secret)

            async def new_secret_code() -> int | None:
                return totp.matching_step(secret, code.strip(), now)

            step = await self._checked(operator_id, address, now, new_secret_code)
            codes = tuple(totp.new_recovery_codes())
            hashes = [totp.recovery_hash(operator_id, c) for c in codes]
            if not await self.factors.use_challenge(token_hash(challenge)):
                raise AuthError("the login step was used already", code="challenge_expired")
            if not await self.factors.enrol(operator_id, found.secret, step, hashes):
                raise AuthError("a second factor is enrolled already", code="challenge_expired")
            await self._repo.append_audit(now, "second_factor_enrolled", actor, "", {})
        else:
            await self.check_code(operator_id, code, now, address=address)
            if not await self.factors.use_challenge(token_hash(challenge)):
                raise AuthError("the login step was used already", code="challenge_expired")
        operator = await self._repo.find_operator(id=operator_id)
        if operator is None or operator.disabled:
            raise Forbidden("this account is disabled", code="account_disabled")
        token = new_token()
        expires_at = now + self._config.login_ttl_hours * 3600
        await self._repo.add_login(operator.id, token_hash(token), now, expires_at)
        self._seen[token_hash(token)] = self._written[token_hash(token)] = now
        await self._repo.append_audit(now, "login", actor, "", {"role": operator.role})
        logger.info("operator %d logged in", operator.id)
        return Login(token, operator, expires_at, codes)

    async def check_code(
        self, operator_id: int, code: str, now: float, *, address: str | None = None
    ) -> None:
        """Accepts one TOTP code of the enrolled secret (each step once) or one unused
        recovery code, counted against the same throttle as passwords. Raises
        :class:`AuthError` ``invalid_code``, ``second_factor_missing``, or
        :class:`LoginThrottled`."""
        wrapped = await self.factors.secret(operator_id)
        if wrapped is None:
            raise AuthError("no second factor is enrolled", code="second_factor_missing")
        code = code.strip()
        if totp.looks_like_totp(code):
            secret = self._unwrap(operator_id, wrapped)

            async def totp_code() -> int | None:
                step = totp.matching_step(secret, code, now)
                if step is None or not await self.factors.use_step(operator_id, step):
                    return None  # wrong, or its step used already (a replay)
                return step

            await self._checked(operator_id, address, now, totp_code)
            return

        async def recovery_code() -> int | None:
            hashed = totp.recovery_hash(operator_id, code)
            return 0 if await self.factors.use_recovery_code(operator_id, hashed, now) else None

        await self._checked(operator_id, address, now, recovery_code)
        await self._repo.append_audit(now, "recovery_code_used", f"operator:{operator_id}", "", {})

    async def reauthenticate(
        self, token: str | None, code: str, now: float, *, address: str | None = None
    ) -> OperatorRecord:
        """A fresh second-factor proof for a login (decisions need one)."""
        operator = await self.authenticate(token, now)
        assert token is not None
        await self.check_code(operator.id, code, now, address=address)
        await self.factors.verified(token_hash(token), now)
        await self._repo.append_audit(now, "reauthenticated", f"operator:{operator.id}", "", {})
        return operator

    async def require_recent_proof(self, token: str | None, now: float) -> None:
        """Raises :class:`Forbidden` ``reauthentication_required`` unless the login's
        last second-factor proof is at most ``reauth_minutes`` old."""
        state = await self.factors.login_state(token_hash(token)) if token else None
        if state is None:
            raise AuthError("your login has expired; log in again", code="unauthorized")
        if now - state.verified_at > self._config.reauth_minutes * 60:
            raise Forbidden(
                "enter a code of your authenticator to confirm", code="reauthentication_required"
            )

    async def authenticate(
        self, token: str | None, now: float, *, use: bool = True
    ) -> OperatorRecord:
        """The operator a login token belongs to; notes the login's use (unless not
        ``use``: a page's own refresh). Raises :class:`AuthError` (``unauthorized``,
        ``login_expired`` after ``idle_minutes`` unused)."""
        if not token or len(token) > 128:
            raise AuthError("log in first", code="unauthorized")
        hashed = token_hash(token)
        state = await self.factors.login_state(hashed)
        if state is None or state.expires_at <= now:
            self._seen.pop(hashed, None)
            raise AuthError("your login has expired; log in again", code="unauthorized")
        last_seen = max(state.last_seen, self._seen.get(hashed, 0.0))
        idle_seconds = self._config.idle_minutes * 60
        if idle_seconds > 0 and now - last_seen > idle_seconds:
            await self._expire(hashed, state.operator_id, now)
            raise AuthError(
                "your login ended after a time unused; log in again", code="login_expired"
            )
        operator = await self._repo.find_operator(id=state.operator_id)
        if operator is None or operator.disabled:
            raise AuthError("your login has ended; log in again", code="unauthorized")
        if not use:
            self._seen.setdefault(hashed, last_seen)  # the idle check of open consoles
            return operator
        self._seen[hashed] = now
        if now - max(state.last_seen, self._written.get(hashed, 0.0)) >= TOUCH_EVERY_SECONDS:
            await self._write_use(hashed, now)
        return operator

    async def note_use(self, token: str, operator_id: int, now: float) -> bool:
        """A use of the login other than a request (a console's Socket.IO event): in
        memory, written at most every :data:`TOUCH_EVERY_SECONDS`. False when the login
        has ended: unused for ``idle_minutes`` (it ends now), or gone when the write
        found it (ended by another process: the command line)."""
        if await self.expire_if_idle(token, operator_id, now):
            return False
        hashed = token_hash(token)
        self._seen[hashed] = now
        if now - self._written.get(hashed, 0.0) >= TOUCH_EVERY_SECONDS:
            return await self._write_use(hashed, now)
        return True

    async def ended(self, tokens: list[str], now: float) -> set[str]:
        """Which of these logins have ended (deleted, expired, their account disabled:
        by another process too, the command line), in one query."""
        hashed = {token_hash(t): t for t in tokens}
        live = await self.factors.live_logins(list(hashed), now)
        return {t for h, t in hashed.items() if h not in live}

    def in_use(self, token: str, now: float) -> None:
        """The login is in use now (an operator in a call), noted in memory only."""
        self._seen[token_hash(token)] = now

    async def expire_if_idle(self, token: str, operator_id: int, now: float) -> bool:
        """Ends the login if this process last saw it used ``idle_minutes`` ago or more
        (an open console nobody works in); whether it did."""
        hashed = token_hash(token)
        last = self._seen.get(hashed)
        idle_seconds = self._config.idle_minutes * 60
        if last is None or idle_seconds <= 0 or now - last <= idle_seconds:
            return False
        await self._expire(hashed, operator_id, now)
        return True

    async def _expire(self, hashed: str, operator_id: int, now: float) -> None:
        self._seen.pop(hashed, None)
        self._written.pop(hashed, None)
        await self._repo.delete_login(hashed)
        await self._repo.append_audit(
            now, "login_expired", f"operator:{operator_id}", "", {"idle": True}
        )
        logger.info("operator %d: login ended unused", operator_id)

    async def _write_use(self, hashed: str, now: float) -> bool:
        self._written[hashed] = now  # tried now: the next try in TOUCH_EVERY_SECONDS
        try:
            alive = await self.factors.touch(hashed, now)
        except StorageError as err:
            # the last use is bookkeeping (kept in memory here): a storage that refuses
            # it (a full disk) must not refuse the operator's work with it; the login is
            # taken to live until the next write finds out
            cause = type(err.__cause__ or err).__name__
            logger.warning("a login's last use is not saved (%s); kept in memory", cause)
            return True
        if len(self._seen) > 1000:  # logins long unused, or gone
            horizon = max(self._config.idle_minutes * 60, TOUCH_EVERY_SECONDS * 2)
            self._seen = {h: at for h, at in self._seen.items() if now - at <= horizon}
            self._written = {h: at for h, at in self._written.items() if h in self._seen}
        return alive

    async def logout(self, token: str) -> None:
        self._seen.pop(token_hash(token), None)
        await self._repo.delete_login(token_hash(token))

    async def _checked(
        self,
        operator_id: int,
        address: str | None,
        now: float,
        check: Callable[[], Awaitable[int | None]],
    ) -> int:
        """Counts one second-factor attempt (per account and per address, like a
        password) before ``check`` runs (and uses what it matched); what it gave, or
        :meth:`_failed` (the attempt stays counted)."""
        limits = self._code_limits(operator_id, address)
        wait_seconds = await self.attempts.take(limits, now)
        if wait_seconds > 0:
            raise LoginThrottled(
                f"too many wrong codes; try again in {max(1, round(wait_seconds))} seconds"
            )
        step = await check()
        if step is None:
            await self._failed(operator_id, now, "code")
        await self.attempts.give_back([limit.key for limit in limits])
        assert step is not None
        return step

    async def _failed(self, operator_id: int, now: float, why: str) -> None:
        await self._repo.append_audit(
            now, "second_factor_failed", f"operator:{operator_id}", "", {"why": why}
        )
        raise AuthError("wrong code", code="invalid_code")

    def _code_limits(self, operator_id: int, address: str | None) -> list[AttemptLimit]:
        return [
            AttemptLimit(
                self._keyed(f"a:{client_key(address)}"),
                self._config.address_failed_logins,
                self._delays,
            ),
            AttemptLimit(
                self._keyed(f"f:{operator_id}"), self._config.max_failed_logins, self._delays
            ),
        ]

    def _wrap(self, operator_id: int, secret: bytes) -> bytes:
        if self._wrapper is None:
            raise AuthError("second factors are not available here", code="second_factor_missing")
        return self._wrapper.wrap(secret, _secret_context(operator_id))

    def _unwrap(self, operator_id: int, wrapped: bytes) -> bytes:
        if self._wrapper is None:
            raise AuthError("second factors are not available here", code="second_factor_missing")
        return self._wrapper.unwrap(wrapped, _secret_context(operator_id))

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


def _secret_context(operator_id: int) -> bytes:
    return f"videoid totp secret operator:{operator_id}".encode()
