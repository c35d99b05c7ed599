"""glibc's malloc, told to give back what the server frees.

glibc keeps what a process frees for its next allocations. Two of its habits made the
server's resident memory grow with every call (issue 20.9; ``videoid bench soak``):

* Its threshold for giving a large block a mapping of its own (returned to the system
  when freed) rises to the largest block freed so far. The server's large blocks come
  and go all the time (decoded video frames of 460 kB, 900 kB pictures for the live
  analysis, uploaded photos, decrypted recordings for the evidence seal); once the
  threshold has risen past them, they are cut from the heaps instead, and what they
  leave when freed is kept there, fragmented among the small blocks allocated since.
* A heap is shrunk only from its top, and only when its top is free.
* Every thread that allocates while the others hold their arenas' locks gets an arena of
  its own, up to eight per core, and each arena keeps its own free memory. The server's
  threads (the event loop, the executor's, the decoders' and encoders') made some ten
  arenas; in a 30-minute soak the free memory they held grew by 15 MB even after each
  trim, against 2.8 MB with two arenas (``videoid bench soak --server-env
  MALLOC_ARENA_MAX=2``), the resident memory at the soak's quiet points then level.

In a soak of whole calls the bytes in use stayed at about 46 MB while the memory held
free by malloc grew by some 10 MB a customer. :meth:`GlibcMalloc.tune` fixes the
threshold at glibc's initial 128 kB, so that a large block is always mapped on its own
and given back when freed, and allows two arenas; :meth:`GlibcMalloc.trim` gives back
the free pages inside the heaps, which the server does every
``server.memory_trim_seconds``.

Another C library (musl, macOS) has neither call: both do nothing there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from typing import Any

M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter (malloc.h); setting it also stops the threshold's rise."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own initial value: blocks this large or larger get a mapping of their own."""
M_ARENA_MAX = -8
"""``mallopt``'s parameter (malloc.h) for the most arenas the process makes."""
ARENA_MAX = 2
"""The main arena and one for all other threads: what the soak above measured."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class GlibcMalloc:
    def __init__(self) -> None:
        self._libc: Any = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            libc.mallinfo2.argtypes, libc.mallinfo2.restype = [], _MallInfo2
            libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
            libc.malloc_info.restype = ctypes.c_int
            libc.fdopen.argtypes, libc.fdopen.restype = (
                [ctypes.c_int, ctypes.c_char_p],
                ctypes.c_void_p,
            )
            libc.fclose.argtypes, libc.fclose.restype = [ctypes.c_void_p], ctypes.c_int
        except (OSError, AttributeError):
            return
        self._libc = libc

    @property
    def available(self) -> bool:
        return self._libc is not None

    def tune(self) -> bool:
        """Large blocks mapped on their own from now on, and at most :data:`ARENA_MAX`
        arenas (for the whole process); True if glibc took both settings.

        Call it before the process starts a thread: glibc fixes its arena limit when a
        second thread first needs an arena, and :envvar:`MALLOC_ARENA_MAX`, set in the
        environment, goes before this setting."""
        if self._libc is None:
            return False
        mapped = bool(self._libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
        if os.environ.get("MALLOC_ARENA_MAX"):
            return mapped  # the operator's choice, which glibc read at start
        return mapped and bool(self._libc.mallopt(M_ARENA_MAX, ARENA_MAX))

    def trim(self) -> bool:
        """Give the heaps' free pages back; True if any were. Blocking (it takes each
        arena's lock in turn, milliseconds for hundreds of megabytes): call it in a
        thread."""
        return self._libc is not None and bool(self._libc.malloc_trim(0))

    def arenas(self) -> int:
        """How many arenas malloc has made (0 without glibc), from ``malloc_info``."""
        if self._libc is None:
            return 0
        with tempfile.TemporaryFile() as out:
            stream = self._libc.fdopen(os.dup(out.fileno()), b"w")
            if not stream:
                return 0
            self._libc.malloc_info(0, stream)
            self._libc.fclose(stream)
            out.seek(0)
            return out.read().count(b"<heap nr=")

    def info(self) -> dict[str, int]:
        """Bytes over all arenas: ``in_use`` (handed out, mapped blocks included),
        ``free`` (freed and held by malloc: some of it given back by :meth:`trim`,
        which malloc still counts), ``mapped`` (large blocks mapped on their own);
        empty without glibc."""
        if self._libc is None:
            return {}
        info = self._libc.mallinfo2()
        return {
            "in_use": info.uordblks + info.hblkhd,
            "free": info.fordblks,
            "mapped": info.hblkhd,
        }
