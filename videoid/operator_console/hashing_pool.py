"""Argon2id password hashing in a bounded pool of threads of its own.

The parameters (RFC 9106 Argon2id; OWASP's first recommendation: 46 MiB, one pass, one
lane) were measured on the development machine (2 cores, argon2-cffi 25.1) at about
48 ms of one core and 46 MiB per hash; the library's default (64 MiB, 3 passes, 4
lanes) took 119 ms of all cores. A hash holds its memory only while it runs, so the
pool holds at most ``workers`` x 46 MiB; logins beyond ``workers + queue`` waiting are
refused with ``server_busy`` instead of queueing without end. Hashes made with other
parameters are replaced at the next successful login."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import ServerBusy

T = TypeVar("T")

HASHER = PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1)
"""Argon2id, 46 MiB, one pass, one lane (about 48 ms measured)."""


class HashingPool:
    """Hashes and verifies passwords in ``workers`` threads (argon2 releases the GIL),
    with at most ``queue`` more waiting; beyond that :class:`ServerBusy`."""

    def __init__(self, workers: int, queue: int, hasher: PasswordHasher = HASHER) -> None:
        self._hasher = hasher
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="argon2")
        self._limit = max(1, workers) + max(0, queue)
        self._in_flight = 0
        self._dummy: str | None = None
        self.hashes = 0
        """Hashes computed or verified so far (a flood shows here, not in the latency)."""

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; ``None`` (no such user) is compared
        against a hash of nobody's password, at the same cost, and never matches."""
        if hashed is None:
            if self._dummy is None:  # made once, not counted in ``hashes``
                self._dummy = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._hasher.hash, "not the password of anyone"
                )
            await self._run(_verify, self._hasher, self._dummy, password + "\x00")
            return False
        return await self._run(_verify, self._hasher, hashed, password)

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._in_flight >= self._limit:
            raise ServerBusy("too many logins at once; try again in a moment")
        self._in_flight += 1
        self.hashes += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self._in_flight -= 1


def _verify(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
