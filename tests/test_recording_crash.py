"""The server killed with SIGKILL mid-call, then started again: the recording written
up to its last complete segment decrypts, verifies and plays, and the session shows
that its recording was interrupted (R13)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import av

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.config import load_config
from videoid.db import Repository
from videoid.recordings.stream_crypto import ReadResult, open_segments
from videoid.storage import ObjectStore

from .conftest import ROOT, free_port


async def start(data: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    """The server as a process, its output to a file (a pipe nobody reads would fill up
    and stop it)."""
    env = {**os.environ, "VIDEOID_ONBOARDING_REQUIRED_STEPS": "", "VIDEOID_LIVE_WORKERS": "0"}
    data.mkdir(parents=True, exist_ok=True)
    log = data / f"server-{len(list(data.glob('server-*.log')))}.log"
    with log.open("wb") as out_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "server.py"), "--port", str(port), "--data-dir",
            str(data), cwd=ROOT, env=env, stdout=out_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    for _ in range(300):
        out = log.read_text(errors="replace")
        if "new invitations" in out:
            return proc, out
        assert proc.returncode is None, out
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server did not start: {log.read_text(errors='replace')}")


async def test_a_killed_server_leaves_a_playable_recording(
    tmp_path: Path, customer_video: Path, operator_video: Path
) -> None:
    data, port = tmp_path / "data", free_port()
    server, out = await start(data, port)
    password = re.search(r"password: (\S+)", out).group(1)  # type: ignore[union-attr]
    link = re.search(r"a customer invitation: (\S+)", out).group(1)  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    operator = OperatorBot(url, "admin", password, video=operator_video, watch_seconds=60)
    customer = CustomerBot(link, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=120))
    cust_task = asyncio.create_task(customer.run(timeout_seconds=120))
    try:
        # generous: on a loaded machine the customer's onboarding alone can take 30 s
        recordings = data / "recordings"
        deadline = asyncio.get_running_loop().time() + 120
        while not list(recordings.glob("*/*.vrec")):
            for task in (op_task, cust_task):
                if task.done():  # a bot gave up: say why, not "no recording"
                    task.result()
            assert asyncio.get_running_loop().time() < deadline, "no recording after 120 s"
            await asyncio.sleep(0.2)
        await asyncio.sleep(4.5)  # about four segments of call
        server.send_signal(signal.SIGKILL)
        await server.wait()
    finally:
        for task in (op_task, cust_task):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await customer.close()
        await operator.signaling.close()

    [file] = list((data / "recordings").glob("*/*.vrec"))
    # started again: the open recording is marked interrupted
    server, _ = await start(data, port)
    server.send_signal(signal.SIGINT)
    await server.wait()

    config = load_config(environ={}, overrides={"server": {"data_dir": str(data)}})
    repo = await Repository.open(config.database_url)
    try:
        [row] = [r for r in await _all_recordings(repo) if file.name.startswith(r["id"])]
        assert row["status"] == "interrupted" and row["ended_at"] is not None, row
        session_id = row["session_id"]
        wrapper = ObjectStore.from_config(repo, config).files.wrapper
        result = ReadResult()
        plain = b"".join(open_segments(file, wrapper, result, row["wrapped_key"]))
    finally:
        await repo.close()
    assert not result.complete and "last segment is missing" in (result.problem or "")
    assert result.segments >= 3, result
    (tmp_path / "partial.mkv").write_bytes(plain)
    with av.open(str(tmp_path / "partial.mkv")) as container:
        titles = {s.index: s.metadata.get("title") for s in container.streams}
        frames = dict.fromkeys(titles.values(), 0)
        with contextlib.suppress(av.error.FFmpegError):  # the last cluster may be cut
            for packet in container.demux():
                if packet.size and packet.stream.type == "video":
                    frames[titles[packet.stream.index]] += sum(1 for _ in packet.decode())
                elif packet.size:
                    frames[titles[packet.stream.index]] += 1
    assert frames["customer_video"] >= 20 and frames["operator_video"] >= 20, frames
    assert frames["customer_audio"] >= 50 and frames["operator_audio"] >= 50, frames
    assert session_id


async def _all_recordings(repo: Repository) -> list[dict]:
    import sqlalchemy as sa

    async with repo.engine.connect() as db:
        rows = (await db.execute(sa.text("SELECT id, session_id FROM recordings"))).all()
    out = []
    for recording_id, session_id in rows:
        for r in await repo.recordings(session_id):
            if r["id"] == recording_id:
                out.append({**r, "session_id": session_id})
    return out
