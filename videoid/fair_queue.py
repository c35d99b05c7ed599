"""A bounded queue served in turn across owners (pure: no I/O, no clock).

Jobs wait per owner (a session); :meth:`FairQueue.pop` takes the oldest job of the
owner whose turn it is, then moves that owner to the back of the line. So one customer
with many photos waiting delays another customer's photo by at most one of theirs,
not by all of them (issue 14, item 4)."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """The queue holds as many jobs as it may."""


class FairQueue(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        """Jobs that may wait at once; :meth:`push` beyond it raises :class:`QueueFull`."""
        self._waiting: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, owner: str, job: T) -> None:
        """Queue ``job`` of ``owner`` behind that owner's earlier jobs."""
        if self._size >= self.limit:
            raise QueueFull
        self._waiting.setdefault(owner, deque()).append(job)
        self._size += 1

    def pop(self) -> tuple[str, T] | None:
        """The next job in turn and its owner; None when nothing waits."""
        if not self._waiting:
            return None
        owner, jobs = next(iter(self._waiting.items()))
        job = jobs.popleft()
        self._size -= 1
        del self._waiting[owner]
        if jobs:  # the owner's next job waits for the others' turn
            self._waiting[owner] = jobs
        return owner, job

    def remove(self, owner: str, job: T) -> bool:
        """Take a job out before its turn (its caller gave up); whether it was there."""
        jobs = self._waiting.get(owner)
        if jobs is None or job not in jobs:
            return False
        jobs.remove(job)
        self._size -= 1
        if not jobs:
            del self._waiting[owner]
        return True
