"""The waiting room: queue order, positions, waiting-time estimates and the random
assignment of the customer at the head to one of the eligible operators (R11).

A customer whose connection is gone keeps their place but is never drawn: an operator
would accept into an empty call (issue 14.9). Positions count only connected customers.

Pure: no I/O, no clock, and the randomness comes from the ``rng`` passed in (a
``random.SystemRandom`` in production, a seeded one in tests).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from ..errors import QueueError


class Presence(StrEnum):
    AVAILABLE = "available"
    PAUSED = "paused"
    OFFERED = "offered"
    """An assignment waits for the operator to accept."""
    BUSY = "busy"
    """In a call."""
    OFFLINE = "offline"


@dataclass(frozen=True)
class AssignmentDrawn:
    """The record of one random assignment, kept as evidence that it was random."""

    session_id: str
    operator_id: int
    candidates: tuple[int, ...]
    """The eligible operators at the moment of the draw, in ascending id order."""
    index: int
    """The drawn index into ``candidates``."""
    at: float


@dataclass(frozen=True)
class QueueEntry:
    session_id: str
    since: float
    """When the customer (last) entered the queue."""


@dataclass(frozen=True)
class RoomCheckpoint:
    """A :class:`WaitingRoom` as it was, for :meth:`~WaitingRoom.restore`."""

    entries: tuple[QueueEntry, ...]
    gone: frozenset[str]
    operators: tuple[tuple[int, Presence], ...]
    handle_seconds: float
    handled: int


class WaitingRoom:
    def __init__(self, rng: random.Random, *, initial_handle_seconds: float = 300.0) -> None:
        self._rng = rng
        self._entries: OrderedDict[str, QueueEntry] = OrderedDict()
        self._gone: set[str] = set()
        """Queued sessions whose customer is not connected."""
        self._operators: dict[int, Presence] = {}
        self._handle_seconds = initial_handle_seconds
        self._handled = 0

    def checkpoint(self) -> RoomCheckpoint:
        """The room as it is now (the random source is not part of it)."""
        return RoomCheckpoint(
            tuple(self._entries.values()),
            frozenset(self._gone),
            tuple(self._operators.items()),
            self._handle_seconds,
            self._handled,
        )

    def restore(self, to: RoomCheckpoint) -> None:
        self._entries = OrderedDict((e.session_id, e) for e in to.entries)
        self._gone = set(to.gone)
        self._operators = dict(to.operators)
        self._handle_seconds, self._handled = to.handle_seconds, to.handled

    # -- customers --------------------------------------------------------------------

    def add(
        self, session_id: str, now: float, *, at_head: bool = False, connected: bool = True
    ) -> None:
        """Queue a customer (at the head when re-queued); ``connected=False`` for one whose
        connection is gone: they keep the place and are drawn once back."""
        if session_id in self._entries:
            raise QueueError("already in the queue", code="already_queued")
        self._entries[session_id] = QueueEntry(session_id, now)
        if at_head:
            self._entries.move_to_end(session_id, last=False)
        self.set_connected(session_id, connected)

    def remove(self, session_id: str) -> bool:
        """Remove a customer; False when they were not queued."""
        self._gone.discard(session_id)
        return self._entries.pop(session_id, None) is not None

    def set_connected(self, session_id: str, connected: bool) -> None:
        """Whether a queued customer is connected; only connected ones are drawn."""
        if session_id not in self._entries:
            raise QueueError("not in the queue", code="not_queued")
        if connected:
            self._gone.discard(session_id)
        else:
            self._gone.add(session_id)

    def is_connected(self, session_id: str) -> bool:
        return session_id in self._entries and session_id not in self._gone

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[QueueEntry]:
        return list(self._entries.values())

    def position(self, session_id: str) -> int:
        """1 for the customer drawn next: connected customers ahead, plus one."""
        ahead = 0
        for key in self._entries:
            if key == session_id:
                return ahead + 1
            if key not in self._gone:
                ahead += 1
        raise QueueError("not in the queue", code="not_queued")

    def estimated_wait_seconds(self, session_id: str) -> float:
        """Customers ahead times the average call length, shared among online operators."""
        ahead = self.position(session_id) - 1
        online = sum(1 for p in self._operators.values() if p is not Presence.OFFLINE)
        if self.operators_with(Presence.AVAILABLE) and ahead == 0:
            return 0.0
        return round((ahead + 1) * self._handle_seconds / max(1, online), 1)

    # -- operators --------------------------------------------------------------------

    def set_presence(self, operator_id: int, presence: Presence) -> None:
        if presence is Presence.OFFLINE:
            self._operators.pop(operator_id, None)
        else:
            self._operators[operator_id] = presence

    def presence(self, operator_id: int) -> Presence:
        return self._operators.get(operator_id, Presence.OFFLINE)

    def operators_with(self, presence: Presence) -> list[int]:
        return sorted(op for op, p in self._operators.items() if p is presence)

    def record_call_length(self, seconds: float) -> None:
        """Feed a finished call's length into the waiting-time estimate: the first
        measured call replaces the configured guess, then the mean of the calls so far,
        then a moving average over about the last 20."""
        self._handled += 1
        weight = 1 / min(self._handled, 20)
        self._handle_seconds += (seconds - self._handle_seconds) * weight

    def seed_call_lengths(self, lengths: list[float]) -> None:
        """Start from calls measured before (the latest ones, from the database), so a
        restart does not fall back to the configured guess."""
        for seconds in lengths:
            self.record_call_length(seconds)

    @property
    def handle_seconds(self) -> float:
        """The call length the estimates use now."""
        return self._handle_seconds

    # -- assignment -------------------------------------------------------------------

    def draw(self, now: float) -> AssignmentDrawn | None:
        """Assign the first connected customer to an available operator chosen uniformly
        at random, or return None when no connected customer waits or nobody is
        available. The operator becomes OFFERED and the customer leaves the queue."""
        draw = self.choose(now)
        if draw is not None:
            self.take(draw)
        return draw

    def has_match(self) -> bool:
        """A connected customer waits and an operator is available: :meth:`draw` would
        draw (without using the random source)."""
        return any(p is Presence.AVAILABLE for p in self._operators.values()) and any(
            s not in self._gone for s in self._entries
        )

    def choose(self, now: float) -> AssignmentDrawn | None:
        """:meth:`draw` without carrying it out: the room is as it was until
        :meth:`take` (a driver takes the draw once it is written)."""
        candidates = tuple(self.operators_with(Presence.AVAILABLE))
        session_id = next((s for s in self._entries if s not in self._gone), None)
        if not candidates or session_id is None:
            return None
        index = self._rng.randrange(len(candidates))
        return AssignmentDrawn(session_id, candidates[index], candidates, index, now)

    def take(self, draw: AssignmentDrawn) -> None:
        """Carry out a draw :meth:`choose` made: the operator becomes OFFERED and the
        customer leaves the queue."""
        del self._entries[draw.session_id]
        self._gone.discard(draw.session_id)
        self._operators[draw.operator_id] = Presence.OFFERED
