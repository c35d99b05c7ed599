"""One server per database: a lock held for the serving process's life.

A second ``videoid serve`` on the same data would run its start-up recovery over the
first one's live sessions and offer one customer to two operators (two decisions for
one session). Until the desk runs as a cluster (its lease replaces this), a second
server is refused at start with :class:`AlreadyServing`:

- **SQLite**: an exclusive ``flock`` on ``<database>.lock`` beside the database file.
  The kernel drops it when the process dies, however it dies.
- **PostgreSQL**: a session-level advisory lock (keyed per database and schema) on a
  connection of its own, held open; PostgreSQL drops it when that connection ends.
  If the connection is lost while serving, the lock is taken again on a new one; if
  another server took it meanwhile, that is logged as an error every minute.

Command-line tools (``invite``, ``evidence``, ``cert`` …) do not take it: they work
beside a running server as its clients would.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from ..errors import ConfigError

logger = logging.getLogger(__name__)

_CHECK_SECONDS = 60.0


class AlreadyServing(ConfigError):
    """Another server holds this database."""

    code = "already_serving"


def _refused(where: str) -> AlreadyServing:
    return AlreadyServing(
        f"another videoid server is already running on {where}; stop it first "
        "(or give this one its own data directory or database)"
    )


def advisory_key(schema: str | None) -> int:
    """The advisory lock's key: a signed 64-bit number from a fixed name and the schema
    (advisory locks are per database already)."""
    digest = hashlib.sha256(f"videoid serve:{schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ProcessLock:
    """Held from :meth:`acquire` to :meth:`release`."""

    def __init__(self) -> None:
        self.check_seconds = _CHECK_SECONDS
        """How often the PostgreSQL lock's connection is checked."""
        self.on_lost: Callable[[], None] | None = None
        """Called when the lock was lost to another server (PostgreSQL)."""
        self._fd: int | None = None
        self._url = ""
        self._schema: str | None = None
        self._conn: AsyncConnection | None = None
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(
        cls,
        database_url: str,
        schema: str | None = None,
        on_lost: Callable[[], None] | None = None,
        check_seconds: float = _CHECK_SECONDS,
    ) -> ProcessLock:
        """The lock for ``database_url``, or :class:`AlreadyServing`."""
        lock = cls()
        lock.on_lost, lock.check_seconds = on_lost, check_seconds
        if database_url.startswith("sqlite"):
            path = database_url.split("///", 1)[-1]
            if path and path != ":memory:":  # one file, however its path is spelled
                lock._lock_file(Path(path))
        elif database_url.startswith("postgresql"):
            lock._url, lock._schema = database_url, schema
            if not await lock._take():
                raise _refused(_describe(database_url))
            lock._watch = asyncio.create_task(lock._keep())
        return lock

    def _lock_file(self, database: Path) -> None:
        path = Path(os.path.realpath(database) + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refused(str(path.with_suffix(""))) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    async def _take(self) -> bool:
        """Connect and try the advisory lock; True when this process holds it."""
        engine = create_async_engine(self._url, poolclass=NullPool)
        conn = await engine.connect()
        try:
            held = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self._schema)}
            )
            await conn.commit()
        except BaseException:
            await conn.close()
            await engine.dispose()
            raise
        if not held:
            await conn.close()
            await engine.dispose()
            return False
        self._conn = conn
        return True

    async def _keep(self) -> None:
        """Check the lock's connection now and then; take the lock again if it was lost."""
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                assert self._conn is not None
                await self._conn.scalar(text("SELECT 1"))
                await self._conn.commit()
                continue
            except (SQLAlchemyError, OSError, AssertionError):
                await self._drop_connection()
            try:
                if await self._take():
                    logger.warning("process lock: its connection was lost; taken again")
                else:
                    logger.critical(
                        "process lock: lost, and another server now holds %s: stopping",
                        _describe(self._url),
                    )
                    if self.on_lost is not None:
                        self.on_lost()
                    return
            except (SQLAlchemyError, OSError) as err:
                logger.error("process lock: cannot reach the database (%s)", type(err).__name__)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            engine = conn.engine
            with contextlib.suppress(Exception):
                await conn.close()
            await engine.dispose()

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._drop_connection()  # the advisory lock ends with its connection
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(url: str) -> str:
    """The database, without credentials, for a message."""
    host = url.split("@", 1)[-1] if "@" in url else url.split("://", 1)[-1]
    return "the PostgreSQL database " + host
