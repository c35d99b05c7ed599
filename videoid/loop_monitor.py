"""How late the event loop runs: a task that sleeps a fixed interval and records by how
much each wake-up overshoots it. Lag there is lag for every socket and every frame."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

INTERVAL = 0.05


class LoopMonitor:
    def __init__(self, keep_seconds: float = 120.0) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(keep_seconds / INTERVAL))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            self._samples.append((now, max(0.0, now - before - INTERVAL)))

    def stats(self, seconds: float = 20.0) -> dict[str, Any]:
        """Lag over the last ``seconds``, in milliseconds."""
        since = time.monotonic() - seconds
        lags = sorted(lag for at, lag in self._samples if at >= since)
        if not lags:
            return {"samples": 0}

        def q(p: float) -> float:
            return round(1000 * lags[min(len(lags) - 1, round(p * (len(lags) - 1)))], 2)

        return {"samples": len(lags), "p50": q(0.5), "p99": q(0.99), "max": q(1.0)}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
