"""``python -m videoid.bench.traced_serve [--tracemalloc] serve --data-dir DIR …``:
``videoid serve`` that tells, when asked, what its memory holds (``videoid bench soak``).

On SIGUSR2 the server writes into its data directory ``trace-N.malloc`` (glibc's
``mallinfo2``: bytes in use and bytes free but kept by malloc), ``trace-N.types`` (live
objects counted by type, after a collection) and, with ``--tracemalloc``,
``trace-N.snapshot``; then ``trace-N.done``. Two of them, taken after the warm-up and
at the end, say what the soak's calls left behind: :func:`report` compares them.
Without ``--tracemalloc`` the server runs as ``videoid serve`` does (the dump stalls it
for a moment); tracemalloc slows it and adds to its memory."""

from __future__ import annotations

import collections
import gc
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from ..glibc_malloc import GlibcMalloc

FRAMES = 10
"""Frames kept per allocation: deep enough to reach our code from a library's."""
TOP = 15


PYMALLOC_LINES = {
    "# arenas allocated current": "arenas",
    "# bytes in allocated blocks": "in_use",
    "# bytes in available blocks": "free_blocks",
}


def pymalloc_info() -> dict[str, int]:
    """Python's small-object allocator (its own 1 MiB arenas, mapped apart from
    malloc's), from ``sys._debugmallocstats()``: arenas mapped, bytes in use, and the
    bytes its arenas hold free (an arena is given back only when wholly empty)."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)  # it writes to the C stderr
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    info: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        key = PYMALLOC_LINES.get(name.strip())
        if key is not None and key not in info:
            info[key] = int(value.strip().replace(",", ""))
        elif name.strip().endswith("unused pools * 16384 bytes") and "free_pools" not in info:
            info["free_pools"] = int(value.strip().replace(",", ""))
    if "arenas" in info:
        info["mapped"] = info["arenas"] * 2**20
    return info


def mappings() -> list[tuple[str, int, int]]:
    """(name, size, resident) in kB of each mapping, from ``/proc/self/smaps``; an
    anonymous one is named ``""``."""
    out: list[tuple[str, int, int]] = []
    name, size = "", 0
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                name, size = (fields[5].strip() if len(fields) > 5 else ""), (end - start) // 1024
            elif fields[0] == "Rss:":
                out.append((name, size, int(fields[1])))
    return out


def dump(directory: Path) -> Path:
    """Write the next dump into ``directory``; its ``.done`` path."""
    n = len(list(directory.glob("trace-*.done")))
    # what only the cycle collector would free: kept aside to be counted, then freed
    gc.set_debug(gc.DEBUG_SAVEALL)
    started = time.perf_counter()
    gc.collect()
    collect_ms = (time.perf_counter() - started) * 1000
    garbage = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
    )
    gc.garbage.clear()
    gc.set_debug(0)
    gc.collect()
    counts = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
    base = directory / f"trace-{n}"
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{base}.snapshot")
    Path(f"{base}.types").write_text(json.dumps(counts))
    threads = collections.Counter(re.sub(r"\d+", "N", t.name) for t in threading.enumerate())
    Path(f"{base}.malloc").write_text(
        json.dumps(
            {
                **GlibcMalloc().info(),
                "arenas": GlibcMalloc().arenas(),
                **{f"py_{k}": v for k, v in pymalloc_info().items()},
                "threads": threads,
                "mappings": mappings(),
                "garbage": garbage,
                "collect_ms": collect_ms,
                "tracked": len(gc.get_objects()),
            }
        )
    )
    GlibcMalloc().trim()  # the RSS sampled after the dump: what is in use, not held free
    done = Path(f"{base}.done")
    done.touch()
    return done


def report(before: Path, after: Path) -> None:
    """Print what grew from the ``before`` dump to the ``after`` one (paths without
    their suffix): malloc's bytes in use and free, object counts by type, and (traced)
    allocation sites by size and the largest growth's tracebacks."""
    old_malloc = json.loads(Path(f"{before}.malloc").read_text())
    new_malloc = json.loads(Path(f"{after}.malloc").read_text())
    if old_malloc and new_malloc:
        print(f"\nmalloc (all arenas), {before.name} → {after.name}:")
        for key, what in (
            ("in_use", "in use"),
            ("free", "free but held by malloc"),
            ("mapped", "of which mapped on their own"),
        ):
            a, b = old_malloc.get(key, 0) / 2**20, new_malloc.get(key, 0) / 2**20
            print(f"  {what:<30} {a:8.1f} → {b:8.1f} MB ({b - a:+.1f})")
        print("Python's small-object allocator (arenas of its own):")
        for key, what in (
            ("py_mapped", "arenas mapped"),
            ("py_in_use", "in use"),
            ("py_free_blocks", "free blocks in used pools"),
            ("py_free_pools", "free pools"),
        ):
            a, b = old_malloc.get(key, 0) / 2**20, new_malloc.get(key, 0) / 2**20
            print(f"  {what:<30} {a:8.1f} → {b:8.1f} MB ({b - a:+.1f})")
        print(f"  malloc's arenas at the end: {new_malloc.get('arenas', 0)}")
        threads = ", ".join(f"{n} x{c}" for n, c in sorted(new_malloc.get("threads", {}).items()))
        print(f"Python threads at the end: {threads}")
        garbage = collections.Counter(new_malloc.get("garbage", {}))
        print(
            f"cyclic garbage found at the end: {sum(garbage.values())} objects "
            f"(a full collection of {new_malloc.get('tracked', 0)} tracked objects took "
            f"{new_malloc.get('collect_ms', 0):.0f} ms): "
            + ", ".join(f"{k} {v}" for k, v in garbage.most_common(12))
        )
        resident: collections.Counter[str] = collections.Counter()
        for name, size, rss in new_malloc.get("mappings", []):
            kind = (
                name
                if name.startswith("[")
                else "files"
                if name.startswith("/")
                else f"anonymous {'over' if size >= 8192 else 'under'} 8 MB"
            )
            resident[kind] += rss
        print(
            "resident at the end by mapping (MB): "
            + ", ".join(f"{k} {v / 1024:.1f}" for k, v in resident.most_common(8))
        )
    counts_old = json.loads(Path(f"{before}.types").read_text())
    counts_new = json.loads(Path(f"{after}.types").read_text())
    grown = sorted(
        ((counts_new.get(t, 0) - counts_old.get(t, 0), t) for t in counts_new),
        reverse=True,
    )
    print("\nlive objects by type that grew most:")
    for diff, name in grown[:TOP]:
        if diff <= 0:
            break
        print(f"  {diff:+8d}  {name} (now {counts_new[name]})")
    if not Path(f"{before}.snapshot").exists():
        return
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    old = tracemalloc.Snapshot.load(f"{before}.snapshot").filter_traces(ignore)
    new = tracemalloc.Snapshot.load(f"{after}.snapshot").filter_traces(ignore)
    print(f"\ntracemalloc: allocation sites that grew most ({before.name} → {after.name}):")
    for stat in new.compare_to(old, "lineno")[:TOP]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 2**10:+10.1f} kB {stat.count_diff:+8d} blocks  "
            f"{frame.filename}:{frame.lineno}"
        )
    print("\nthe largest growth by whole traceback (innermost last):")
    for stat in new.compare_to(old, "traceback")[:5]:
        print(f"  {stat.size_diff / 2**10:+10.1f} kB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format(limit=FRAMES, most_recent_first=False):
            print(f"      {line}")


def main(argv: Sequence[str]) -> None:
    args = list(argv)
    directory = Path(args[args.index("--data-dir") + 1])
    if args[0] == "--tracemalloc":
        args.pop(0)
        tracemalloc.start(FRAMES)
    # run between two bytecodes of the main thread, where the event loop runs: what
    # the dump sees is a consistent state (the loop stalls while it writes)
    signal.signal(signal.SIGUSR2, lambda signum, frame: dump(directory))
    from ..__main__ import main as videoid_main

    videoid_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
