"""What the staff's second factor and account management keep in the database: login
challenges, the TOTP secret and its last accepted step, recovery codes, disabled
accounts, and each login's last use and last second-factor proof.

Everything that may be used once is used by one conditional ``UPDATE`` or ``DELETE``
whose row count says whether this request got it: of parallel requests with the same
code, recovery code or challenge, exactly one does (SQLite's one writer, PostgreSQL's
row lock with its ``WHERE`` evaluated again)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StorageError
from .models import LoginChallenge, Operator, OperatorLogin, RecoveryCode


@dataclass(frozen=True)
class Challenge:
    operator_id: int
    kind: str
    """``totp`` or ``enrol``."""
    secret: bytes | None
    """``enrol``: the new secret, wrapped."""
    expires_at: float


@dataclass(frozen=True)
class LoginState:
    operator_id: int
    expires_at: float
    last_seen: float
    verified_at: float


@dataclass(frozen=True)
class StaffAccount:
    """One account as the account lists show it (no secret, no hash)."""

    id: int
    username: str
    role: str
    disabled: bool
    """Whether it may not log in."""
    enrolled: bool
    """Whether it has a second factor."""
    recovery_codes_left: int
    logins: int
    """Logins not yet expired."""
    last_seen: float | None
    """The last use of any of its logins."""


class StaffFactors:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- challenges -----------------------------------------------------------------

    async def add_challenge(
        self,
        token_hash: str,
        operator_id: int,
        kind: str,
        secret: bytes | None,
        now: float,
        expires_at: float,
    ) -> None:
        async with self._begin("save the login challenge") as conn:
            await conn.execute(delete(LoginChallenge).where(LoginChallenge.expires_at <= now))
            await conn.execute(
                insert(LoginChallenge).values(
                    token_hash=token_hash,
                    operator_id=operator_id,
                    kind=kind,
                    secret=secret,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    async def challenge(self, token_hash: str, now: float) -> Challenge | None:
        async with self._begin("read the login challenge") as conn:
            row = (
                await conn.execute(
                    select(
                        LoginChallenge.operator_id,
                        LoginChallenge.kind,
                        LoginChallenge.secret,
                        LoginChallenge.expires_at,
                    ).where(
                        LoginChallenge.token_hash == token_hash, LoginChallenge.expires_at > now
                    )
                )
            ).first()
        return None if row is None else Challenge(row[0], row[1], row[2], row[3])

    async def use_challenge(self, token_hash: str) -> bool:
        """Deletes the challenge; whether this call did (it is used once)."""
        async with self._begin("use the login challenge") as conn:
            done = await conn.execute(
                delete(LoginChallenge).where(LoginChallenge.token_hash == token_hash)
            )
        return done.rowcount == 1

    # -- the second factor ----------------------------------------------------------

    async def secret(self, operator_id: int) -> bytes | None:
        async with self._begin("read the second factor") as conn:
            value = await conn.scalar(
                select(Operator.totp_secret).where(Operator.id == operator_id)
            )
        return None if value is None else bytes(value)

    async def enrol(
        self, operator_id: int, wrapped: bytes, step: int, code_hashes: Sequence[str]
    ) -> bool:
        """Keeps the confirmed secret (its code's step used) and the recovery codes;
        False when the account has a second factor already (a parallel enrolment)."""
        async with self._begin("save the second factor") as conn:
            done = await conn.execute(
                update(Operator)
                .where(Operator.id == operator_id, Operator.totp_secret.is_(None))
                .values(totp_secret=wrapped, totp_last_step=step)
            )
            if done.rowcount != 1:
                return False
            await conn.execute(delete(RecoveryCode).where(RecoveryCode.operator_id == operator_id))
            await conn.execute(
                insert(RecoveryCode),
                [
                    {"operator_id": operator_id, "code_hash": h, "used_at": None}
                    for h in code_hashes
                ],
            )
        return True

    async def use_step(self, operator_id: int, step: int) -> bool:
        """Marks ``step`` used if no later or equal step was: whether this call did."""
        async with self._begin("use the code") as conn:
            done = await conn.execute(
                update(Operator)
                .where(
                    Operator.id == operator_id,
                    Operator.totp_secret.is_not(None),
                    or_(Operator.totp_last_step.is_(None), Operator.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        return done.rowcount == 1

    async def use_recovery_code(self, operator_id: int, code_hash: str, now: float) -> bool:
        async with self._begin("use the recovery code") as conn:
            done = await conn.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.operator_id == operator_id,
                    RecoveryCode.code_hash == code_hash,
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=now)
            )
        return done.rowcount == 1

    async def reset_second_factor(self, operator_id: int) -> None:
        """Forgets the secret and the recovery codes, and ends every login."""
        async with self._begin("reset the second factor") as conn:
            await conn.execute(
                update(Operator)
                .where(Operator.id == operator_id)
                .values(totp_secret=None, totp_last_step=None)
            )
            await conn.execute(delete(RecoveryCode).where(RecoveryCode.operator_id == operator_id))
            await self._end_logins(conn, operator_id)

    # -- accounts -------------------------------------------------------------------

    async def set_disabled(self, operator_id: int, disabled: bool) -> bool:
        """Whether the account exists; disabling also ends every login."""
        async with self._begin("change the account") as conn:
            done = await conn.execute(
                update(Operator).where(Operator.id == operator_id).values(disabled=disabled)
            )
            if disabled:
                await self._end_logins(conn, operator_id)
        return done.rowcount == 1

    async def set_password(self, operator_id: int, password_hash: str) -> None:
        """A new password; every login ends."""
        async with self._begin("change the password") as conn:
            await conn.execute(
                update(Operator)
                .where(Operator.id == operator_id)
                .values(password_hash=password_hash)
            )
            await self._end_logins(conn, operator_id)

    async def set_password_hash(self, operator_id: int, password_hash: str) -> None:
        """The same password hashed again (new parameters); the logins stay."""
        async with self._begin("save the password hash") as conn:
            await conn.execute(
                update(Operator)
                .where(Operator.id == operator_id)
                .values(password_hash=password_hash)
            )

    async def revoke_logins(self, operator_id: int) -> int:
        """Ends every login and pending challenge of the account; how many logins."""
        async with self._begin("end the logins") as conn:
            return await self._end_logins(conn, operator_id)

    async def accounts(self, now: float) -> list[StaffAccount]:
        logins = (
            select(
                OperatorLogin.operator_id,
                func.count().label("n"),
                func.max(OperatorLogin.last_seen).label("seen"),
            )
            .where(OperatorLogin.expires_at > now)
            .group_by(OperatorLogin.operator_id)
            .subquery()
        )
        codes = (
            select(RecoveryCode.operator_id, func.count().label("n"))
            .where(RecoveryCode.used_at.is_(None))
            .group_by(RecoveryCode.operator_id)
            .subquery()
        )
        query = (
            select(
                Operator.id,
                Operator.username,
                Operator.role,
                Operator.disabled,
                Operator.totp_secret.is_not(None),
                codes.c.n,
                logins.c.n,
                logins.c.seen,
            )
            .outerjoin(logins, logins.c.operator_id == Operator.id)
            .outerjoin(codes, codes.c.operator_id == Operator.id)
            .order_by(Operator.username)
        )
        async with self._begin("list the accounts") as conn:
            rows = (await conn.execute(query)).all()
        return [
            StaffAccount(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5] or 0, r[6] or 0, r[7])
            for r in rows
        ]

    # -- logins ---------------------------------------------------------------------

    async def login_state(self, token_hash: str) -> LoginState | None:
        async with self._begin("read the login") as conn:
            row = (
                await conn.execute(
                    select(
                        OperatorLogin.operator_id,
                        OperatorLogin.expires_at,
                        OperatorLogin.last_seen,
                        OperatorLogin.verified_at,
                    ).where(OperatorLogin.token_hash == token_hash)
                )
            ).first()
        return None if row is None else LoginState(row[0], row[1], row[2], row[3])

    async def touch(self, token_hash: str, last_seen: float) -> bool:
        """Notes a use of the login; whether it still exists."""
        async with self._begin("note the login's use") as conn:
            done = await conn.execute(
                update(OperatorLogin)
                .where(OperatorLogin.token_hash == token_hash)
                .values(
                    last_seen=case(
                        (OperatorLogin.last_seen < last_seen, last_seen),
                        else_=OperatorLogin.last_seen,
                    )
                )
            )
        return done.rowcount == 1

    async def verified(self, token_hash: str, now: float) -> bool:
        """Records a second-factor proof of a login; whether it still exists."""
        async with self._begin("note the second factor") as conn:
            done = await conn.execute(
                update(OperatorLogin)
                .where(OperatorLogin.token_hash == token_hash)
                .values(verified_at=now, last_seen=now)
            )
        return done.rowcount == 1

    async def live_logins(self, token_hashes: Sequence[str], now: float) -> set[str]:
        """Which of these logins still exist and have not expired."""
        if not token_hashes:
            return set()
        async with self._begin("read the logins") as conn:
            rows = await conn.scalars(
                select(OperatorLogin.token_hash)
                .join(Operator, Operator.id == OperatorLogin.operator_id)
                .where(
                    OperatorLogin.token_hash.in_(list(token_hashes)),
                    OperatorLogin.expires_at > now,
                    Operator.disabled.is_(False),
                )
            )
            return set(rows)

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    async def _end_logins(conn: AsyncConnection, operator_id: int) -> int:
        await conn.execute(delete(LoginChallenge).where(LoginChallenge.operator_id == operator_id))
        done = await conn.execute(
            delete(OperatorLogin).where(OperatorLogin.operator_id == operator_id)
        )
        return int(done.rowcount or 0)

    @asynccontextmanager
    async def _begin(self, what: str) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction; database errors become :class:`StorageError`."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise StorageError(f"cannot {what}: {err}") from err
