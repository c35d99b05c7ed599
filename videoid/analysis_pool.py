"""The analysis pool: CPU-heavy image work in worker processes, off the event loop.

Workers are started lazily (spawned, not forked: the server process holds threads
and sockets) and load the face models on first use. ``run`` awaits a module-level
function in a worker and returns its plain-data result.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class AnalysisPool:
    def __init__(self, workers: int) -> None:
        self._workers = max(1, workers)
        self._executor: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def warm(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (a model loader) once per worker, so the first real job is fast."""
        await asyncio.gather(*(self.run(fn) for _ in range(self._workers)))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
