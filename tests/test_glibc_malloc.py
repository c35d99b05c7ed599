"""glibc's malloc told to give back what the server frees (issue 20.9): with the
threshold fixed, a large block freed once does not send the next ones into the heap,
where what they leave stays; and the periodic trim runs in the server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from videoid.glibc_malloc import GlibcMalloc

from .conftest import ROOT, StartServer

pytestmark = pytest.mark.skipif(not GlibcMalloc().available, reason="glibc only")
FRAME = 460_800
"""A decoded 640x480 picture (I420), as the server's decoders make 15 a second."""

# Run in a process of its own: the setting is the whole process's, and what a test
# process allocated before would decide where the blocks go.
PROGRAM = textwrap.dedent(
    """
    import ctypes, json, sys
    from videoid.glibc_malloc import GlibcMalloc

    malloc = GlibcMalloc()
    if sys.argv[1] == "tuned":
        assert malloc.tune()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    frame = int(sys.argv[2])
    libc.free(libc.malloc(frame))  # glibc's threshold rises past it, unless fixed
    before = malloc.info()
    blocks, pins = [], []
    for _ in range(20):  # small long-lived blocks among them, as in a server
        blocks.append(libc.malloc(frame))
        pins.append(libc.malloc(4096))
    mapped = malloc.info()["mapped"] - before["mapped"]
    for block in blocks:
        libc.free(block)
    after = malloc.info()
    print(json.dumps({"mapped": mapped, "kept_free": after["free"] - before["free"]}))
    """
)


def run(mode: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode, str(FRAME)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


def test_large_blocks_are_mapped_and_given_back_once_tuned() -> None:
    frames = 20 * FRAME
    default = run("default")
    # glibc's own behaviour: after one such block was freed, the next ones come from
    # the heap (none mapped), and once freed they stay in it, held by malloc
    assert default["mapped"] < frames and default["kept_free"] >= frames
    tuned = run("tuned")  # each mapped on its own, and given back when freed
    assert tuned["mapped"] >= frames and tuned["kept_free"] < FRAME


def test_trim_gives_back_and_says_whether_it_did() -> None:
    malloc = GlibcMalloc()
    assert isinstance(malloc.trim(), bool)


async def test_the_server_trims_every_memory_trim_seconds(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims = asyncio.Event()

    def trim(self: GlibcMalloc) -> bool:
        trims.set()
        return True

    monkeypatch.setattr(GlibcMalloc, "trim", trim)
    await start_server(server={"memory_trim_seconds": 0.05})
    await asyncio.wait_for(trims.wait(), 5)
