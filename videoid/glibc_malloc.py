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

In a soak of whole calls the bytes in use stayed at about 46 MB while the memory held
free by malloc grew by some 10 MB a customer. :meth:`GlibcMalloc.tune` fixes the
threshold at glibc's initial 128 kB, so that a large block is always mapped on its own
and given back when freed; :meth:`GlibcMalloc.trim` gives back the free pages inside
the heaps, which the server does every ``server.memory_trim_seconds``.

Another C library (musl, macOS) has neither call: both do nothing there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter (malloc.h); setting it also stops the threshold's rise."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own initial value: blocks this large or larger get a mapping of their own."""


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
        except (OSError, AttributeError):
            return
        self._libc = libc

    @property
    def available(self) -> bool:
        return self._libc is not None

    def tune(self) -> bool:
        """Large blocks mapped on their own from now on (for the whole process); True
        if glibc took the setting."""
        if self._libc is None:
            return False
        return bool(self._libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))

    def trim(self) -> bool:
        """Give the heaps' free pages back; True if any were. Blocking (it takes each
        arena's lock in turn, milliseconds for hundreds of megabytes): call it in a
        thread."""
        return self._libc is not None and bool(self._libc.malloc_trim(0))

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
