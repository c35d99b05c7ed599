"""One server per database (issue 20, item 1): a second ``videoid serve`` on the same
SQLite file or PostgreSQL database is refused with a clear message, before it touches
the first one's sessions; the lock ends with its process, however it ends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from videoid.app import create_app
from videoid.config import load_config
from videoid.db.process_lock import AlreadyServing

from .conftest import ROOT, StartServer, free_port
from .test_queue_flow import customer


async def test_a_second_server_on_the_same_database_is_refused(
    database_url: str, start_server: StartServer, tmp_path: Path
) -> None:
    first = await start_server(database_url)
    waiting, session_id = await customer(first)
    assert (await waiting.request("join_queue"))["state"] == "waiting"
    config = first.services.config
    # the same data (directory or database), another port: as a second `serve` would
    second = create_app(
        load_config(
            environ={},
            overrides={
                "server": {"port": free_port(), "data_dir": str(config.data_path)},
                "database": {"url": database_url},
                "ca": {"create_at_start": False},
                "live": {"warm_up": False},
            },
        )
    )
    runner = web.AppRunner(second)
    with pytest.raises(AlreadyServing) as refused:
        await runner.setup()
    await runner.cleanup()
    assert refused.value.code == "already_serving"
    assert "another videoid server is already running" in str(refused.value)
    # the first server's waiting customer was not touched (a second start-up's
    # recovery used to move them back out of the queue) and it still serves
    record = await first.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "waiting"
    await waiting.close()
    async with aiohttp.ClientSession() as http, http.get(f"{first.url}/api/health") as r:
        assert r.status == 200
    # once the first has stopped, the data is free for the next one
    await first.stop()
    again = web.AppRunner(second)
    await again.setup()
    await again.cleanup()


def _serve(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "videoid", "serve", "--data-dir", str(data),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "VIDEOID_CONFIG": ""},
        )  # fmt: skip


async def _healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server stopped"
            try:
                async with http.get(f"http://127.0.0.1:{port}/api/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the server did not start")


async def test_serve_twice_is_refused_and_a_killed_server_frees_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    first = _serve(data, port, tmp_path / "first.log")
    try:
        await _healthy(port, first)
        second = _serve(data, free_port(), tmp_path / "second.log")
        code = await asyncio.to_thread(second.wait, 120)
        output = (tmp_path / "second.log").read_text()
        assert code != 0
        assert "another videoid server is already running" in output, output
        assert "Traceback" not in output, output
        # SIGKILL: no clean-up at all, and still the lock is gone with the process
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
        third_port = free_port()
        third = _serve(data, third_port, tmp_path / "third.log")
        try:
            await _healthy(third_port, third)
        finally:
            third.send_signal(signal.SIGINT)
            await asyncio.to_thread(third.wait, 60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


async def test_a_lock_lost_to_another_server_stops_this_one(database_url: str) -> None:
    """PostgreSQL: the lock's connection dies and another server takes the lock before
    this one could take it again: this one is told to stop (``serve`` stops itself)."""
    if not database_url:
        pytest.skip("the advisory lock is PostgreSQL's (SQLite's is the kernel's flock)")
    import asyncpg

    from videoid.db.process_lock import ProcessLock, advisory_key

    lost = asyncio.Event()
    lock = await ProcessLock.acquire(database_url, on_lost=lost.set, check_seconds=1.0)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    other = await asyncpg.connect(dsn)
    try:
        key = advisory_key(None)
        holder = await other.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        # the lock's backend ended (waiting until it has: PostgreSQL 14 and later), and
        # the lock taken by another connection before this one checks its own
        assert await other.fetchval("SELECT pg_terminate_backend($1, 5000)", holder)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", key)
        await asyncio.wait_for(lost.wait(), 10)
    finally:
        await other.close()
        await lock.release()
