"""glibc's malloc told to give back what the server frees (issue 20.9): with the
threshold fixed, a large block freed once does not send the next ones into the heap,
where what they leave stays; and the periodic trim runs in the server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

from videoid.glibc_malloc import ARENA_MAX, GlibcMalloc

from .conftest import ROOT, StartServer

pytestmark = pytest.mark.skipif(not GlibcMalloc().available, reason="glibc only")
FRAME = 460_800
"""A decoded 640x480 picture (I420), as the server's decoders make 15 a second."""

# Run in a process of its own: the setting is the whole process's, and what a test
# process allocated before would decide where the blocks go.
PROGRAM = textwrap.dedent(
    """
    import ctypes, json, sys
    from videoid.glibc_malloc import ARENA_MAX, GlibcMalloc

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


# Threads that are alive together, each allocating: glibc gives each its own arena unless
# limited.
THREADS_PROGRAM = textwrap.dedent(
    """
    import ctypes, sys, threading
    from videoid.glibc_malloc import ARENA_MAX, GlibcMalloc

    if sys.argv[1] == "tuned":
        assert GlibcMalloc().tune()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    together = threading.Barrier(7)

    def work():
        libc.malloc(1000)
        together.wait()
        together.wait()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    together.wait()  # all six have allocated and are alive
    print(GlibcMalloc().arenas())
    together.wait()
    for thread in threads:
        thread.join()
    """
)


def arenas(mode: str, env: dict[str, str] | None = None) -> int:
    out = subprocess.run(
        [sys.executable, "-c", THREADS_PROGRAM, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | (env or {}),
    )
    return int(out.stdout)


def test_threads_share_two_arenas_once_tuned() -> None:
    assert arenas("default") >= 4  # glibc's own: an arena for each thread, up to 8 a core
    assert arenas("tuned") <= ARENA_MAX
    # an operator's MALLOC_ARENA_MAX goes first
    assert arenas("tuned", {"MALLOC_ARENA_MAX": "4"}) > ARENA_MAX


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
