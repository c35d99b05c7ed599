"""Analysis workers (issue 20, items 3 and 7): they die with the server however it
dies (SIGKILL included), and a worker that dies is replaced without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from videoid.analysis_pool import AnalysisPool
from videoid.errors import AnalysisUnavailable

from .conftest import StartServer, free_port
from .test_process_lock import _healthy, _serve


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_server_leaves_no_worker_behind(tmp_path: Path) -> None:
    port = free_port()
    server = _serve(tmp_path / "data", port, tmp_path / "serve.log")
    try:
        await _healthy(port, server)
        # the live analysis' workers start with the server (live.warm_up); spawn's
        # resource tracker is a child too: every child must go
        deadline = time.monotonic() + 60
        while len(children := _children(server.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(children) >= 2, children
        server.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.wait, 30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not [p for p in children if _alive(p)], "workers outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _exit_now(*args: object) -> None:
    os._exit(3)


async def test_a_dead_worker_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead worker's pool is replaced: by the next job, or by the health check first
    (issue 20.10); a job that kills its workers fails cleanly and the pool stays
    healthy; workers that die as they start make the pool ``unavailable``."""
    from videoid import analysis_pool

    pool = AnalysisPool(1)
    try:
        first = await pool.run(os.getpid)
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.5)
        # the job sent to the broken pool runs in a new one
        second = await pool.run(os.getpid)
        assert second != first
        assert await pool.run(os.getpid) == second
        # killed while idle: the health check replaces it before a job meets it
        executor = pool._executor
        os.kill(second, signal.SIGKILL)
        for _ in range(100):  # the executor's watcher thread notices
            if getattr(executor, "_broken", False):
                break
            await asyncio.sleep(0.05)
        assert await pool.health() == "ok" and pool._executor is None
        # a job that kills every worker it runs in fails cleanly, and the pool goes on
        with pytest.raises(AnalysisUnavailable) as failed:
            await pool.run(_exit_now)
        assert failed.value.code == "analysis_unavailable" and failed.value.status == 503
        assert pool.unavailable and await pool.health() == "ok"  # workers do start
        assert await pool.run(os.getpid) > 0
        # workers that die as they start
        monkeypatch.setattr(analysis_pool, "_die_with_parent", _exit_now)
        await asyncio.to_thread(pool.close)
        with pytest.raises(AnalysisUnavailable):
            await pool.run(os.getpid)
        assert await pool.health() == "unavailable"
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_photo_whose_workers_die_costs_the_customer_no_attempt(
    start_server: StartServer,
) -> None:
    server = await start_server()
    invitation = await server.invite()
    sid, onboarding = invitation.session_id, server.services.onboarding
    with pytest.raises(AnalysisUnavailable):
        await onboarding._analyse(sid, "document_front", _exit_now, b"photo")
    assert await server.services.repo.count_attempts(sid, "document_front") == 0


async def test_the_operator_is_told_when_the_live_signals_stop() -> None:
    """The live analysis' workers keep dying (killed as soon as they start): the frame's
    analysis fails after the pool was replaced once, and the operator gets
    ``signals_unavailable`` once; when frames are analysed again, signals come."""
    import av
    import numpy as np

    from videoid.config import LiveConfig
    from videoid.liveness.live import LiveAnalysis

    published: list[tuple[str, dict[str, object]]] = []

    async def publish(event: str, data: dict[str, object]) -> None:
        published.append((event, data))

    pool = AnalysisPool(1)
    analysis = LiveAnalysis("s1", pool, LiveConfig(), publish)
    frame = av.VideoFrame.from_ndarray(np.zeros((120, 160, 3), np.uint8), format="rgb24")
    killing = True

    async def kill_workers() -> None:
        while killing:
            executor = pool._executor
            for pid in list(getattr(executor, "_processes", None) or {}):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.01)

    killer = asyncio.ensure_future(kill_workers())
    try:
        for at in (1.0, 2.0):
            await analysis._analyse(frame, at)
        killing = False
        await killer
        assert [e for e, _ in published] == ["signals_unavailable"]
        assert published[0][1] == {"session_id": "s1", "reason": "analysis_unavailable"}
        await analysis._analyse(frame, 3.0)  # a new pool, workers left alone
        assert [e for e, _ in published] == ["signals_unavailable", "signals"]
    finally:
        killing = False
        await killer
        await analysis.close()
        await asyncio.to_thread(pool.close)
