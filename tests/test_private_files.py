"""Personal data at rest is its owner's alone (issue 14, item 8): the data directory is
0700 and every file the server and the commands write there is 0600 (no group or other
bit), whatever the umask they were started with."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

from .conftest import ROOT, StartServer, free_port


def loose(data: Path) -> list[str]:
    """Everything under ``data`` that group or others could read, write or enter."""
    found = []
    for path in [data, *data.rglob("*")]:
        if path.is_symlink():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            found.append(f"{path.relative_to(data)}: {oct(stat.S_IMODE(path.stat().st_mode))}")
    return found


async def run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o022),  # a permissive umask, as many systems have
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_server_and_the_commands_write_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = await run(
        "invite", "--data-dir", str(data), "--email", "a@example.org", "--phone", "+393471234567"
    )
    assert code == 0, out
    # the server (its first start makes the CA, keys and token) and a command after it
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", "serve", "--data-dir", str(data), "--port", str(port),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while b"videoid is running" not in await asyncio.wait_for(proc.stdout.readline(), 120):
            pass
    finally:
        proc.terminate()
        await proc.wait()
    code, out = await run("audit", "verify", "--data-dir", str(data))
    assert code == 0, out
    names = {p.name for p in data.rglob("*")}
    assert {"videoid.db", "master.key", "evidence.key"} <= names, names
    assert loose(data) == []


async def test_an_existing_loose_data_directory_is_tightened(
    start_server: StartServer, tmp_path: Path
) -> None:
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    (data / "videoid.db").touch(mode=0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "videoid.db", 0o644)
    server = await start_server(server={"data_dir": str(data)})
    await server.invite()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "videoid.db").stat().st_mode) == 0o600
