"""The analysis pool: CPU-heavy image work in worker processes, off the event loop.

Workers are started lazily (spawned, not forked: the server process holds threads
and sockets) and load the face models on first use. ``run`` awaits a module-level
function in a worker and returns its plain-data result.

Customers' photos go through :meth:`AnalysisPool.admit` first: a place is held for the
photo (at most ``workers + queue`` at once; beyond, :class:`~videoid.errors.ServerBusy`
with a Retry-After), and the photos waiting are started in turn across sessions
(:class:`~videoid.fair_queue.FairQueue`), so that one customer's many photos do not
hold back another's (issue 14, item 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .errors import AnalysisUnavailable, ServerBusy
from .fair_queue import FairQueue

T = TypeVar("T")

UNBOUNDED = 1 << 30

logger = logging.getLogger(__name__)


def _die_with_parent(parent: int) -> None:
    """In each worker, first: the kernel kills the worker when the server dies, however
    it dies (PR_SET_PDEATHSIG); a watchdog thread covers the moment before that was set
    and systems without it. A killed server leaves no worker behind."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class AnalysisPool:
    def __init__(
        self, workers: int, queue: int = UNBOUNDED, probe: Callable[[], Any] = os.getpid
    ) -> None:
        """``probe``, a module-level function run in a worker by :meth:`health` after a
        job failed for want of workers, should load what the jobs need (the models):
        workers that die loading them fail it."""
        self._workers = max(1, workers)
        self._probe = probe
        self._executor: ProcessPoolExecutor | None = None
        self._limit = self._workers + max(0, queue)
        self._held = 0
        """Places held by admitted jobs (waiting or running)."""
        self._waiting: FairQueue[asyncio.Future[None]] = FairQueue(self._limit)
        self._running = 0
        self._seconds: deque[float] = deque(maxlen=16)
        """How long the last jobs took (for the Retry-After of a refusal)."""
        self.unavailable = False
        """The last job failed for want of workers (``analysis_unavailable``), and none
        has succeeded since."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker. A pool whose worker died (killed, out of
        memory) is replaced by a new one and the job run once more there; a job that
        kills its worker twice fails with ``analysis_unavailable``."""
        loop = asyncio.get_running_loop()
        job = functools.partial(fn, *args, **kwargs)
        for attempt in (1, 2):
            executor = self._executor
            if executor is None:
                executor = self._executor = ProcessPoolExecutor(
                    self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_die_with_parent,
                    initargs=(os.getpid(),),
                )
            try:
                result = await loop.run_in_executor(executor, job)
            except BrokenProcessPool:
                self._replace(executor, "a worker died")
                if attempt == 2:
                    self.unavailable = True
                    raise AnalysisUnavailable() from None
                continue
            self.unavailable = False
            return result
        raise AssertionError("unreachable")

    def _replace(self, executor: ProcessPoolExecutor, why: str) -> None:
        if self._executor is executor:  # the first to notice replaces it
            self._executor = None
            # its jobs under way fail with BrokenProcessPool and are sent again (a
            # cancelled one would fail its request as if its caller had gone)
            executor.shutdown(wait=False, cancel_futures=False)
            logger.error("analysis pool: %s; the pool was replaced", why)

    async def health(self, timeout_seconds: float = 30.0) -> str:
        """``ok`` or ``unavailable``, for the health check. A pool whose worker died
        while idle (killed, out of memory) is replaced now, not by the next customer's
        photo (``_broken``: set by the executor's own watcher thread as a worker dies;
        private, and checked for with getattr). After a job failed for want of
        workers, the probe (loading the models) tells whether workers work again — a
        poisonous photo kills its worker, not the pool."""
        executor = self._executor
        if executor is not None and getattr(executor, "_broken", False):
            self._replace(executor, "a worker was found dead")
        if not self.unavailable:
            return "ok"
        try:
            async with asyncio.timeout(timeout_seconds):
                await self.run(self._probe)
        except (AnalysisUnavailable, TimeoutError):
            return "unavailable"
        return "ok"

    @contextlib.asynccontextmanager
    async def admit(self, owner: str) -> AsyncIterator[Turn]:
        """Hold a place for one job of ``owner`` (a session), or raise ServerBusy at
        once when every place is held; the job waits its turn with :meth:`Turn.wait`."""
        if self._held >= self._limit:
            busy = ServerBusy("our server is busy with other photos; try again in a moment")
            busy.retry_after_seconds = self.retry_after_seconds()
            raise busy
        self._held += 1
        try:
            yield Turn(self, owner)
        finally:
            self._held -= 1

    def retry_after_seconds(self) -> int:
        """When a place is likely to be free: the photos ahead over the workers, times
        the recent time per photo (at least one second)."""
        each = sum(self._seconds) / len(self._seconds) if self._seconds else 1.0
        return max(1, math.ceil(each * self._held / self._workers))

    def _start_next(self) -> None:
        while self._running < self._workers:
            popped = self._waiting.pop()
            if popped is None:
                return
            _, turn = popped
            if turn.done():  # its caller gave up while waiting
                continue
            self._running += 1
            turn.set_result(None)

    async def warm(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (a model loader) once per worker, so the first real job is fast."""
        await asyncio.gather(*(self.run(fn) for _ in range(self._workers)))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class Turn:
    """An admitted job's place in the pool."""

    def __init__(self, pool: AnalysisPool, owner: str) -> None:
        self._pool, self._owner = pool, owner

    @contextlib.asynccontextmanager
    async def wait(self) -> AsyncIterator[None]:
        """Wait until it is this job's turn (in turn across owners), then hold one of
        the workers until the block ends."""
        pool = self._pool
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        pool._waiting.push(self._owner, turn)
        pool._start_next()
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():  # given a worker, then cancelled
                pool._running -= 1
                pool._start_next()
            else:
                pool._waiting.remove(self._owner, turn)
            raise
        started = loop.time()
        try:
            yield
        finally:
            pool._seconds.append(loop.time() - started)
            pool._running -= 1
            pool._start_next()
