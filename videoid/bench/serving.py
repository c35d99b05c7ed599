"""What the benchmarks that run ``videoid serve`` as a process share."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp


async def wait_until_healthy(
    url: str,
    proc: subprocess.Popen[bytes],
    timeout_seconds: float,
    log: Path,
    every_seconds: float = 0.5,
) -> None:
    """Wait for the server at ``url`` to answer its health check with 200; raise if it
    does not within ``timeout_seconds`` or its process ends (``log``: where to look)."""
    deadline = time.monotonic() + timeout_seconds
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/api/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server did not start; see {log}")
            await asyncio.sleep(every_seconds)
