"""Login attempts counted in the database before a password is checked.

Each limited thing (a username, a client address) has one row. An attempt is counted
by one conditional ``UPDATE ... WHERE free_at <= now`` per row, all rows of an attempt
in one transaction: the database orders parallel requests on the row (SQLite's one
writer, PostgreSQL's row lock, whose ``WHERE`` is evaluated again on the row another
request just changed), so that of N parallel attempts at most the allowance is
evaluated, whichever process serves them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..errors import StorageError
from .models import LoginThrottleRow

R = LoginThrottleRow


class _Refused(Exception):
    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class AttemptLimit:
    key: str
    """What is limited: a keyed hash, never a typed username or an address."""
    free: int
    """Attempts in a row evaluated without waiting."""
    delays: tuple[float, ...]
    """Seconds to wait after attempt ``free``, ``free + 1``, ... (the last one repeats)."""


class LoginAttempts:
    def __init__(self, engine: AsyncEngine, forget_seconds: float) -> None:
        self._engine = engine
        self._forget_seconds = forget_seconds
        """Counted attempts older than this start again from none."""

    async def take(self, limits: Sequence[AttemptLimit], now: float) -> float:
        """Count one attempt against every limit, all or none: ``0.0`` when counted,
        else the seconds to wait (nothing counted). Raises :class:`StorageError`."""
        try:
            async with self._engine.begin() as conn:
                for limit in limits:
                    await self._insert_missing(conn, limit.key, now)
                    counted = await conn.execute(
                        update(R)
                        .where(R.key == limit.key, R.free_at <= now)
                        .values(
                            failures=self._failures_after(now),
                            # no wait due: free_at stays, so that a parallel attempt
                            # whose clock was read a moment earlier is not refused
                            free_at=case(
                                (self._delay(limit, now) > 0, now + self._delay(limit, now)),
                                else_=R.free_at,
                            ),
                            at=now,
                        )
                    )
                    if counted.rowcount != 1:
                        free_at = await conn.scalar(select(R.free_at).where(R.key == limit.key))
                        raise _Refused(max(0.001, float(free_at or now) - now))
        except _Refused as refused:  # the transaction rolled back: nothing counted
            return refused.wait_seconds
        except SQLAlchemyError as err:
            raise StorageError(f"cannot count the login attempt: {err}") from err
        return 0.0

    async def give_back(self, keys: Sequence[str]) -> None:
        """A successful login's attempt no longer counts (a wait already due stays)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(R).where(R.key.in_(keys), R.failures > 0).values(failures=R.failures - 1)
                )
        except SQLAlchemyError as err:
            raise StorageError(f"cannot update the login attempts: {err}") from err

    async def forget(self, now: float) -> int:
        """Deletes rows whose attempts are forgotten anyway; how many."""
        try:
            async with self._engine.begin() as conn:
                done = await conn.execute(delete(R).where(R.at < now - self._forget_seconds))
        except SQLAlchemyError as err:
            raise StorageError(f"cannot forget old login attempts: {err}") from err
        return int(done.rowcount or 0)

    def _failures_after(self, now: float) -> ColumnElement[int]:
        return case((R.at < now - self._forget_seconds, 1), else_=R.failures + 1)

    def _delay(self, limit: AttemptLimit, now: float) -> ColumnElement[float]:
        failures = self._failures_after(now)
        ladder: list[tuple[ColumnElement[bool], float]] = [(failures < limit.free, 0.0)]
        ladder += [(failures == limit.free + i, d) for i, d in enumerate(limit.delays[:-1])]
        return case(*ladder, else_=limit.delays[-1] if limit.delays else 0.0)

    async def _insert_missing(self, conn: AsyncConnection, key: str, now: float) -> None:
        values = {"key": key, "failures": 0, "free_at": 0.0, "at": now}
        if conn.dialect.name == "postgresql":
            await conn.execute(postgresql.insert(R).values(**values).on_conflict_do_nothing())
        else:
            await conn.execute(sqlite.insert(R).values(**values).on_conflict_do_nothing())
