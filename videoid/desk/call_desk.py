"""The call desk: who waits, who is offered to whom, who is in a call, and every
deadline — without I/O (aioquic's ``QuicConnection`` is the model).

The driver (:class:`~videoid.call_center.CallCenter`) feeds it what happened through
``handle_*(…, now)`` and the clock through :meth:`CallDesk.handle_timer`, and carries
out what :meth:`CallDesk.next_command` returns: write, notify, open or close a call's
media. Each ``handle_*`` either raises before changing anything or changes the desk
and queues its commands. A step someone asked for (accept, decide, join the queue) is
taken only if written: the driver takes a :meth:`CallDesk.checkpoint` before it and
:meth:`CallDesk.restore`\\ s it when the step's asked :class:`~.commands.Persist`
fails. A step that happened regardless (a connection lost, a time run out) stays taken;
its events wait in the machine until written.

Offers are made one at a time by :meth:`CallDesk.offer_next`, each its own step, so an
offer that cannot be written never undoes the step that made it possible.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..db import OperatorRecord, SessionRecord
from ..errors import AlreadyTaken, IllegalTransition, NotAssigned, SessionInUse, SessionNotFound
from ..queue import AssignmentDrawn, Presence, RoomCheckpoint, WaitingRoom
from ..session import IdentificationSession, Outcome, State
from ..session.identification import Checkpoint as MachineCheckpoint
from .commands import (
    CloseMedia,
    Command,
    EvidenceChanged,
    ForgetIfIdle,
    Forgotten,
    NotifyCustomer,
    NotifyOperator,
    NotifyOperators,
    OpenMedia,
    Persist,
    RecordGap,
)

logger = logging.getLogger(__name__)

QUEUE_UPDATE_SECONDS = 1.0
"""Waiting customers and operators are told of queue changes at most this often."""

ClientIce = Callable[[str, float, bool], dict[str, Any]]
"""(who, now, customer) → the ICE servers and policy a client is given."""


@dataclass(frozen=True)
class DeskTimes:
    offer_timeout_seconds: float
    """An offer not accepted within this is withdrawn and its operator paused."""
    connect_seconds: float
    """An accepted call whose customer's media did not arrive within this ends (0: none)."""
    reconnect_seconds: float
    """A customer whose connection dropped mid-call may come back within this (R12)."""


@dataclass
class Seat:
    """A session someone is connected to (or whose writes are not all done)."""

    machine: IdentificationSession
    customer_sid: str | None = None
    offer_deadline: float | None = None
    customer_gone_at: float | None = None
    """When the customer's connection dropped mid-call (R12), while they may come back:
    to the call, or to the head of the queue when the operator dropped meanwhile."""
    last_queue_info: tuple[int, float] | None = None
    media_on: bool = False
    """The call's media are open (between OpenMedia and CloseMedia)."""
    writes_kept: bool = False
    """The driver keeps writes of it the storage refused (a gap, the recording's end):
    not forgotten until they are written."""


@dataclass
class OperatorLink:
    operator: OperatorRecord
    sid: str
    wants: Presence = Presence.PAUSED
    """What the operator chose: available or paused."""
    session_id: str | None = None
    """The session offered to them or in their call."""


@dataclass(frozen=True)
class DeskCheckpoint:
    seats: dict[str, tuple[Seat, MachineCheckpoint]]
    operators: dict[int, OperatorLink]
    room: RoomCheckpoint
    interrupted: frozenset[str]
    queue_dirty: bool
    commands: tuple[Command, ...]


class CallDesk:
    def __init__(
        self,
        times: DeskTimes,
        client_ice: ClientIce,
        *,
        rng: random.Random,
        required_steps: tuple[State, ...] = (),
        initial_handle_seconds: float = 300.0,
    ) -> None:
        self._times = times
        self._client_ice = client_ice
        self._required = required_steps
        self._room = WaitingRoom(rng, initial_handle_seconds=initial_handle_seconds)
        self._seats: dict[str, Seat] = {}
        self._operators: dict[int, OperatorLink] = {}
        self._interrupted: set[str] = set()
        """Sessions a start found waiting or in a call: their customer is told once."""
        self._queue_dirty = False
        self._queue_told_at = -QUEUE_UPDATE_SECONDS
        self._commands: deque[Command] = deque()

    # -- the driver's side ------------------------------------------------------------

    def next_command(self) -> Command | None:
        return self._commands.popleft() if self._commands else None

    def queued(self) -> tuple[Command, ...]:
        """The commands queued, left queued."""
        return tuple(self._commands)

    def commands(self) -> Iterator[Command]:
        """Every queued command, oldest first, each taken off the queue as it is given."""
        while (command := self.next_command()) is not None:
            yield command

    def checkpoint(self) -> DeskCheckpoint:
        """The desk as it is now, for :meth:`restore` when an asked step is not written."""
        return DeskCheckpoint(
            {
                sid: (copy.copy(seat), seat.machine.checkpoint())
                for sid, seat in self._seats.items()
            },
            {op: copy.copy(link) for op, link in self._operators.items()},
            self._room.checkpoint(),
            frozenset(self._interrupted),
            self._queue_dirty,
            tuple(self._commands),
        )

    def restore(self, to: DeskCheckpoint) -> None:
        """Back to ``to``: what was done since (and its commands) is undone."""
        for seat, machine in to.seats.values():
            seat.machine.roll_back(machine)
        self._seats = {sid: copy.copy(seat) for sid, (seat, _) in to.seats.items()}
        self._operators = {op: copy.copy(link) for op, link in to.operators.items()}
        self._room.restore(to.room)
        self._interrupted = set(to.interrupted)
        self._queue_dirty = to.queue_dirty
        self._commands = deque(to.commands)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` next has something to do (None: nothing waits)."""
        times = self._times
        deadlines: list[float] = []
        for seat in self._seats.values():
            machine = seat.machine
            connect = machine.connect_deadline(times.connect_seconds)
            if connect is not None:
                deadlines.append(connect)
            if machine.state is State.ASSIGNED and seat.offer_deadline is not None:
                deadlines.append(seat.offer_deadline)
            if seat.customer_gone_at is not None and seat.customer_sid is None:
                deadlines.append(seat.customer_gone_at + times.reconnect_seconds)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Expire offers nobody accepted in time, calls their customer did not join in
        time, and customers' reconnect windows."""
        times = self._times
        for seat in list(self._seats.values()):
            machine = seat.machine
            deadline = machine.connect_deadline(times.connect_seconds)
            if deadline is not None and deadline <= now:
                self._customer_gone(seat, now)
                continue
            if (
                machine.state is State.ASSIGNED
                and seat.offer_deadline is not None
                and seat.offer_deadline <= now
            ):
                operator_id = machine.operator_id
                self._withdraw(seat, "offer_timeout", now, pause_operator=True)
                logger.info(
                    "session %s: offer to operator %s timed out", machine.session_id, operator_id
                )
            if (
                seat.customer_gone_at is not None
                and seat.customer_sid is None
                and now - seat.customer_gone_at >= times.reconnect_seconds
            ):
                if machine.state is State.IN_CALL:
                    self._record_gap(seat, "system", now, resumed=False)
                else:  # queued (the operator dropped meanwhile): leaves the queue
                    logger.info("session %s: the customer did not come back", machine.session_id)
                seat.customer_gone_at = None
                self._customer_leaves(seat, now)
                self._commands.append(ForgetIfIdle(seat.machine.session_id))

    def flush_queue(self, now: float, monotonic: float) -> None:
        """Tell waiting customers whose position or estimate changed, and all operators,
        if the queue changed since and at most once a second (100 customers joining at
        once make one update each, not a hundred): call it after each step."""
        if not self._queue_dirty or monotonic - self._queue_told_at < QUEUE_UPDATE_SECONDS:
            return  # the tick comes back within the second
        self._queue_dirty, self._queue_told_at = False, monotonic
        for entry in self._room.entries():
            seat = self._seats.get(entry.session_id)
            if seat is None:
                continue
            info = (
                self._room.position(entry.session_id),
                self._room.estimated_wait_seconds(entry.session_id),
            )
            if info != seat.last_queue_info:
                seat.last_queue_info = info
                self._commands.append(
                    NotifyCustomer(
                        entry.session_id,
                        "queue",
                        {"position": info[0], "estimated_wait_seconds": info[1]},
                    )
                )
        self._commands.append(NotifyOperators("queue_snapshot", self.snapshot(now)))

    # -- start ------------------------------------------------------------------------

    def machine_of(self, record: SessionRecord) -> IdentificationSession:
        """The state machine of a stored session."""
        return IdentificationSession(
            record.id,
            state=State(record.state),
            required_steps=self._required,
            operator_id=record.operator_id,
            ready_state=State(record.ready_state),
            handled_by=record.handled_by,
        )

    def seed_call_lengths(self, lengths: list[float]) -> None:
        self._room.seed_call_lengths(lengths)

    def handle_recovered(self, record: SessionRecord, now: float) -> IdentificationSession:
        """A start found the session waiting or in a call, with nobody connected: back to
        where its customer may queue again (a system transition); its customer is told
        once, when back. The driver writes the machine returned."""
        machine = self.machine_of(record)
        machine.interrupted(now)
        self._interrupted.add(record.id)
        return machine

    # -- customers --------------------------------------------------------------------

    def handle_customer_connected(self, record: SessionRecord, sid: str, now: float) -> str | None:
        """A customer's connection arrived; the connection it replaces (to close): in a
        call, a new connection takes over from one that has not noticed it died; else a
        second one is refused (SessionInUse)."""
        seat = self._seats.get(record.id)
        if seat is None:
            seat = self._seats[record.id] = Seat(self.machine_of(record))
        replaced = None
        if seat.customer_sid is not None and seat.customer_sid != sid:
            if seat.machine.state is not State.IN_CALL:
                raise SessionInUse()
            replaced = seat.customer_sid
        if seat.machine.state is State.IN_CALL and (
            seat.customer_gone_at is not None or replaced is not None
        ):
            self._customer_back(seat, now)
        elif seat.customer_gone_at is not None:
            # back to the place in the queue the dropped call left them (issue 14.9)
            seat.customer_gone_at = None
            if record.id in self._room:
                self._room.set_connected(record.id, True)
                self._queue_dirty = True
        seat.customer_sid = sid
        return replaced

    def connected_view(self, session_id: str, now: float) -> dict[str, Any]:
        """The view a customer's new connection gets: the page says once that a restart
        interrupted the session."""
        seat = self._seat(session_id)
        view = self.customer_view(session_id, now)
        if session_id in self._interrupted and seat.machine.state is not State.IN_CALL:
            self._interrupted.discard(session_id)
            if seat.machine.state is not State.WAITING:
                view["interrupted"] = True
        return view

    def handle_customer_disconnected(self, session_id: str, sid: str, now: float) -> None:
        seat = self._seats.get(session_id)
        if seat is None or seat.customer_sid != sid:
            return
        seat.customer_sid = None
        window = self._times.reconnect_seconds
        if seat.machine.state is State.IN_CALL and window > 0:
            # the same operator keeps the call for a while: the page reconnects by itself
            seat.customer_gone_at = now
            operator_id = seat.machine.operator_id
            assert operator_id is not None
            self._commands.append(
                NotifyOperator(
                    operator_id,
                    "customer_reconnecting",
                    {"session_id": session_id, "seconds": window},
                )
            )
            logger.info("session %s: customer dropped; waiting %s s", session_id, window)
            return
        self._customer_leaves(seat, now)
        self._commands.append(ForgetIfIdle(session_id))

    def handle_customer_media(self, session_id: str, now: float) -> None:
        """The customer's media reached the call: no connect deadline any more."""
        seat = self._seats.get(session_id)
        if seat is not None and seat.machine.state is State.IN_CALL:
            seat.machine.customer_joined(now)

    def handle_join_queue(self, session_id: str, now: float) -> None:
        seat = self._seat(session_id)
        seat.machine.enter_queue(now)
        self._commands.append(Persist(seat.machine, asked=True))
        self._room.add(session_id, now)
        self._queue_dirty = True

    def handle_leave_queue(self, session_id: str, now: float) -> None:
        seat = self._seat(session_id)
        if seat.machine.state not in (State.WAITING, State.ASSIGNED):
            seat.machine.leave_queue(now)  # raises IllegalTransition
        self._customer_leaves(seat, now, asked=True)

    def check_step(self, machine: IdentificationSession, allowed: Iterable[State]) -> None:
        """Raises IllegalTransition (``step_not_allowed``) unless the session is in one of
        ``allowed``."""
        if machine.state not in tuple(allowed):
            raise IllegalTransition(
                f"this step cannot be done now (the session is {machine.state.value})",
                code="step_not_allowed",
            )

    def handle_step(
        self,
        machine: IdentificationSession,
        now: float,
        complete: State | None = None,
        advance: Callable[[IdentificationSession, float], None] | None = None,
    ) -> None:
        """An onboarding step the driver saved: recorded done (``complete``), or the
        session moved on (``advance``, after the decision: certificate, contract)."""
        if complete is not None:
            machine.complete_step(complete, now)
        if advance is not None:
            advance(machine, now)
        self._commands.append(Persist(machine, asked=True))
        session_id = machine.session_id
        if advance is not None:
            self._commands.append(EvidenceChanged(session_id, machine.state.value))
        if session_id in self._seats:
            self._commands.append(
                NotifyCustomer(session_id, "state", self.customer_view(session_id, now))
            )

    # -- operators --------------------------------------------------------------------

    def handle_operator_connected(self, operator: OperatorRecord, sid: str) -> dict[str, Any]:
        link = self._operators.get(operator.id)
        if link is not None and link.sid != sid:
            raise SessionInUse("you are already connected in another tab")
        self._operators[operator.id] = OperatorLink(operator, sid)
        self._room.set_presence(operator.id, Presence.PAUSED)
        self._queue_dirty = True
        return {
            "operator": {"id": operator.id, "username": operator.username, "role": operator.role},
            "presence": Presence.PAUSED.value,
        }

    def handle_operator_disconnected(self, operator_id: int, sid: str, now: float) -> None:
        link = self._operators.get(operator_id)
        if link is None or link.sid != sid:
            return
        seat = self._seats.get(link.session_id) if link.session_id else None
        try:
            if seat is not None and seat.machine.operator_id == operator_id:
                if seat.machine.state is State.ASSIGNED:
                    self._withdraw(seat, "operator_left", now, pause_operator=False)
                elif seat.machine.state is State.IN_CALL:
                    self._drop_call(seat, now, by="operator")
        finally:
            # the connection is gone whatever became of the above: left registered, it
            # would keep the operator out ("already connected in another tab")
            del self._operators[operator_id]
            self._room.set_presence(operator_id, Presence.OFFLINE)
            self._queue_dirty = True

    def handle_presence(self, operator_id: int, status: str) -> None:
        link = self._operators[operator_id]
        link.wants = Presence(status)
        if self._room.presence(operator_id) in (Presence.AVAILABLE, Presence.PAUSED):
            self._room.set_presence(operator_id, link.wants)
        self._queue_dirty = True

    def presence(self, operator_id: int) -> Presence:
        return self._room.presence(operator_id)

    def handle_accept(self, operator_id: int, session_id: str, now: float) -> dict[str, Any]:
        seat = self._seats.get(session_id)
        if seat is None:  # never offered (to anyone): nothing to tell of it
            raise NotAssigned()
        machine = seat.machine
        if machine.state is State.IN_CALL or (
            machine.state is State.ASSIGNED and machine.operator_id != operator_id
        ):
            raise AlreadyTaken()
        if machine.state is not State.ASSIGNED:
            raise NotAssigned()
        machine.start_call(operator_id, now)
        self._commands.append(Persist(machine, asked=True))
        seat.offer_deadline = None
        self._room.set_presence(operator_id, Presence.BUSY)
        seat.media_on = True
        self._commands.append(OpenMedia(session_id, operator_id))
        link = self._operators[operator_id]
        self._commands.append(
            NotifyCustomer(
                session_id,
                "call_started",
                {
                    "operator": {"display_name": link.operator.username},
                    **self._client_ice(session_id, now, True),
                },
            )
        )
        self._queue_dirty = True
        return {
            "session_id": session_id,
            "state": machine.state.value,
            **self._client_ice(f"staff-{operator_id}", now, False),
        }

    def handle_decline(self, operator_id: int, session_id: str, now: float) -> None:
        seat = self._seats.get(session_id)
        if (
            seat is None
            or seat.machine.state is not State.ASSIGNED
            or seat.machine.operator_id != operator_id
        ):
            raise NotAssigned()
        self._withdraw(seat, "declined", now, pause_operator=True, asked=True)

    def check_decision(self, operator_id: int, session_id: str) -> None:
        """Raises unless the operator is in a call with the session (before the gate)."""
        seat = self._seats.get(session_id)
        if seat is None or seat.machine.operator_id != operator_id:
            raise NotAssigned("this session is not in a call with you")
        if seat.machine.state is not State.IN_CALL:
            raise IllegalTransition(
                f"decide is not allowed while the session is {seat.machine.state.value}"
            )

    def handle_decide(
        self,
        operator_id: int,
        session_id: str,
        outcome: str,
        reason_code: str,
        reason_text: str,
        now: float,
    ) -> dict[str, Any]:
        self.check_decision(operator_id, session_id)
        seat = self._seats[session_id]
        machine = seat.machine
        started = machine.call_started_at
        machine.decide(operator_id, Outcome(outcome), reason_code, reason_text, now)
        self._commands.append(Persist(machine, asked=True))
        if started is not None:
            self._room.record_call_length(now - started)
        self._close_media(seat)
        self._release_operator(operator_id)
        self._commands.append(EvidenceChanged(session_id, "decision"))
        self._commands.append(
            NotifyCustomer(
                session_id, "outcome", {"outcome": outcome, "state": machine.state.value}
            )
        )
        if outcome == Outcome.SUSPENDED.value:
            self._commands.append(NotifyOperators("reviews_changed", {}))
        self._commands.append(ForgetIfIdle(session_id))
        self._queue_dirty = True
        return {"session_id": session_id, "state": machine.state.value}

    def handle_review(
        self,
        machine: IdentificationSession,
        supervisor_id: int,
        outcome: str,
        reason_code: str,
        reason_text: str,
        now: float,
    ) -> dict[str, Any]:
        """A supervisor decides a suspended session (four-eyes, R15)."""
        machine.review(supervisor_id, Outcome(outcome), reason_code, reason_text, now)
        session_id = machine.session_id
        self._commands.append(Persist(machine, asked=True))
        self._commands.append(EvidenceChanged(session_id, "review"))
        self._commands.append(
            NotifyCustomer(
                session_id, "outcome", {"outcome": outcome, "state": machine.state.value}
            )
        )
        self._commands.append(NotifyOperators("reviews_changed", {}))
        return {"session_id": session_id, "state": machine.state.value}

    # -- assignment -------------------------------------------------------------------

    def can_offer(self) -> bool:
        """:meth:`offer_next` would make an offer."""
        return self._room.has_match()

    def offer_next(self, now: float) -> AssignmentDrawn | None:
        """Offer the first connected waiting customer to an operator drawn at random
        (R11), if both exist: a step of its own, its Persist asked (an offer that cannot
        be written is not made: the driver restores the checkpoint taken before)."""
        draw = self._room.draw(now)
        if draw is None:
            return None
        seat = self._seats[draw.session_id]
        seat.machine.assign(draw.operator_id, draw.at)
        self._commands.append(Persist(seat.machine, asked=True, assignment=draw))
        seat.offer_deadline = draw.at + self._times.offer_timeout_seconds
        self._operators[draw.operator_id].session_id = draw.session_id
        self._commands.append(
            NotifyOperator(
                draw.operator_id,
                "assignment_offered",
                {
                    "session_id": draw.session_id,
                    "timeout_seconds": self._times.offer_timeout_seconds,
                },
            )
        )
        self._commands.append(
            NotifyCustomer(draw.session_id, "assigned", {"state": State.ASSIGNED.value})
        )
        self._queue_dirty = True
        logger.info(
            "session %s: offered to operator %d (drawn %d of %d)",
            draw.session_id,
            draw.operator_id,
            draw.index + 1,
            len(draw.candidates),
        )
        return draw

    # -- queries ----------------------------------------------------------------------

    def machine(self, session_id: str) -> IdentificationSession | None:
        """The session's machine if someone is connected to it."""
        seat = self._seats.get(session_id)
        return seat.machine if seat is not None else None

    def machines(self) -> list[IdentificationSession]:
        return [seat.machine for seat in self._seats.values()]

    def call_operator(self, session_id: str) -> int | None:
        """The operator in a call with the session; None when it is not in a call."""
        seat = self._seats.get(session_id)
        if seat is None or seat.machine.state is not State.IN_CALL:
            return None
        return seat.machine.operator_id

    def operator_session(self, operator_id: int) -> str | None:
        """The session offered to the operator or in their call."""
        link = self._operators.get(operator_id)
        return link.session_id if link else None

    def customer_view(self, session_id: str, now: float) -> dict[str, Any]:
        seat = self._seat(session_id)
        machine = seat.machine
        view: dict[str, Any] = {"session_id": session_id, "state": machine.state.value}
        if session_id in self._room:
            view["position"] = self._room.position(session_id)
            view["estimated_wait_seconds"] = self._room.estimated_wait_seconds(session_id)
            seat.last_queue_info = (view["position"], view["estimated_wait_seconds"])
        elif machine.state is State.ASSIGNED:
            view["position"], view["estimated_wait_seconds"] = 1, 0.0  # an operator is coming
        elif machine.state is State.IN_CALL:
            link = self._operators.get(machine.operator_id or -1)
            view["operator"] = {"display_name": link.operator.username if link else ""}
            view.update(self._client_ice(session_id, now, True))
        return view

    def snapshot(self, now: float) -> dict[str, Any]:
        """The queue as operators see it."""
        return {
            "waiting": [
                {
                    "session_id": e.session_id,
                    "position": i,
                    "waiting_seconds": round(now - e.since, 1),
                    "customer_connected": self._room.is_connected(e.session_id),
                }
                for i, e in enumerate(self._room.entries(), start=1)
            ],
            "operators": {
                p.value: len(self._room.operators_with(p))
                for p in Presence
                if p is not Presence.OFFLINE
            },
        }

    def live_view(self, now: float) -> dict[str, Any]:
        """The queue, the operators and the calls now (the supervisor's dashboard)."""
        entries = self._room.entries()
        return {
            "waiting": len(entries),
            "longest_wait_seconds": round(max((now - e.since for e in entries), default=0.0), 1),
            "calls": sum(1 for s in self._seats.values() if s.machine.state is State.IN_CALL),
            "operators": [
                {
                    "id": link.operator.id,
                    "username": link.operator.username,
                    "role": link.operator.role,
                    "presence": self._room.presence(op_id).value,
                    "session_id": link.session_id,
                }
                for op_id, link in sorted(self._operators.items())
            ],
        }

    def held(self) -> dict[str, int]:
        return {
            "sessions": len(self._seats),
            "operators": len(self._operators),
            "queued": len(self._room),
            "interrupted": len(self._interrupted),
        }

    # -- internals --------------------------------------------------------------------

    def forget_if_idle(self, session_id: str) -> None:
        """Forget a session nobody is connected to, unless some of its state is not
        written yet (the driver's retry writes it, then calls this again). The desk
        asks for it with :class:`~.commands.ForgetIfIdle`, after the step's writes."""
        seat = self._seats.get(session_id)
        if (
            seat is not None
            and seat.customer_sid is None
            and not seat.writes_kept
            and not seat.machine.unsaved_events()
            and seat.machine.state not in (State.WAITING, State.ASSIGNED, State.IN_CALL)
        ):
            del self._seats[session_id]
            self._commands.append(Forgotten(session_id))

    def writes_kept(self, session_id: str, kept: bool) -> None:
        """The driver keeps writes of the session to retry (``kept``), or has written
        them all: a session is not forgotten before."""
        seat = self._seats.get(session_id)
        if seat is not None:
            seat.writes_kept = kept
            if not kept:
                self.forget_if_idle(session_id)

    def _seat(self, session_id: str) -> Seat:
        seat = self._seats.get(session_id)
        if seat is None:
            raise SessionNotFound()
        return seat

    def _happened(self, seat: Seat, step: Callable[[IdentificationSession], None]) -> None:
        step(seat.machine)  # an illegal step raises before anything changes
        self._commands.append(Persist(seat.machine, asked=False))

    def _customer_back(self, seat: Seat, now: float) -> None:
        """The customer reconnected mid-call: the gap is recorded (R12)."""
        gap = self._record_gap(seat, "customer", now, resumed=True)
        seat.customer_gone_at = None
        logger.info(
            "session %s: customer back after %.1f s", seat.machine.session_id, gap["seconds"]
        )
        operator_id = seat.machine.operator_id
        if operator_id is not None:
            self._commands.append(
                NotifyOperator(
                    operator_id, "customer_back", {"session_id": seat.machine.session_id, **gap}
                )
            )

    def _record_gap(self, seat: Seat, actor: str, now: float, *, resumed: bool) -> dict[str, Any]:
        """The call's gap from the customer's drop until now (R12); the same recording
        goes on, the gap marked in it."""
        gone = seat.customer_gone_at if seat.customer_gone_at is not None else now
        gap = {"from": gone, "to": now, "seconds": round(now - gone, 3), "resumed": resumed}
        self._commands.append(RecordGap(seat.machine.session_id, actor, gap, now))
        return gap

    def _customer_gone(self, seat: Seat, now: float) -> None:
        """The customer did not join the call within ``connect_seconds`` of the accept
        (issue 14.9): the operator gets ``call_ended`` ``customer_gone`` and is released;
        the session goes back to where its customer may queue again."""
        machine = seat.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        connect = self._times.connect_seconds
        self._happened(seat, lambda m: m.customer_gone(now, connect_seconds=connect))
        if seat.customer_gone_at is not None:  # their connection dropped meanwhile
            self._record_gap(seat, "system", now, resumed=False)
            seat.customer_gone_at = None
        self._close_media(seat)
        self._release_operator(operator_id)
        sid = machine.session_id
        logger.info("session %s: the customer did not join operator %d's call", sid, operator_id)
        self._commands.append(
            NotifyOperator(
                operator_id, "call_ended", {"session_id": sid, "reason": "customer_gone"}
            )
        )
        # a page still connected learns the call ended, then where it continues from
        self._commands.append(
            NotifyCustomer(
                sid, "call_ended", {"reason": "customer_gone", "state": machine.state.value}
            )
        )
        self._commands.append(NotifyCustomer(sid, "state", self.customer_view(sid, now)))
        self._commands.append(ForgetIfIdle(sid))
        self._queue_dirty = True

    def _customer_leaves(self, seat: Seat, now: float, *, asked: bool = False) -> None:
        """The customer leaves the queue or the call: ``asked`` (they pressed leave), not
        taken unless written; else their connection is gone."""
        machine = seat.machine

        def leave(machine: IdentificationSession) -> None:
            machine.leave_queue(now)

        if machine.state is State.WAITING:
            leave(machine)
            self._commands.append(Persist(machine, asked=asked))
            self._room.remove(machine.session_id)
        elif machine.state is State.ASSIGNED:
            operator_id = machine.operator_id
            leave(machine)
            self._commands.append(Persist(machine, asked=asked))
            seat.offer_deadline = None
            if operator_id is not None:
                self._release_operator(operator_id)
                self._commands.append(
                    NotifyOperator(
                        operator_id,
                        "assignment_withdrawn",
                        {"session_id": machine.session_id, "reason": "customer_left"},
                    )
                )
        elif machine.state is State.IN_CALL:
            self._drop_call(seat, now, by="customer")
        else:
            return
        self._queue_dirty = True

    def _withdraw(
        self, seat: Seat, reason: str, now: float, *, pause_operator: bool, asked: bool = False
    ) -> None:
        """Take back an offer: the customer returns to the head of the queue."""
        machine = seat.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        machine.withdraw_assignment(now, reason=reason)
        self._commands.append(Persist(machine, asked=asked))
        seat.offer_deadline = None
        self._room.add(machine.session_id, now, at_head=True)
        seat.last_queue_info = None  # back in the queue: told where, even if unchanged
        link = self._release_operator(operator_id)
        if link is not None and pause_operator:
            link.wants = Presence.PAUSED
            self._room.set_presence(operator_id, Presence.PAUSED)
        self._commands.append(
            NotifyOperator(
                operator_id,
                "assignment_withdrawn",
                {
                    "session_id": machine.session_id,
                    "reason": reason,
                    "presence": self._room.presence(operator_id).value,
                },
            )
        )
        self._queue_dirty = True

    def _drop_call(self, seat: Seat, now: float, *, by: str) -> None:
        """A participant's connection was lost mid-call (it happened)."""
        machine = seat.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        self._happened(seat, lambda m: m.drop_call(now, by=by))
        customer_here = seat.customer_sid is not None
        if by == "operator" and not customer_here:
            # the customer dropped too and may still come back (R12): the call's gap ends
            # here; their place at the head waits for them until the window runs out, and
            # is not offered meanwhile (issue 14.9)
            if seat.customer_gone_at is not None:
                self._record_gap(seat, "system", now, resumed=False)
            else:
                seat.customer_gone_at = now
        else:
            seat.customer_gone_at = None
        self._close_media(seat)
        if by == "operator":
            self._room.add(machine.session_id, now, at_head=True, connected=customer_here)
            seat.last_queue_info = None  # back in the queue: told where, even if unchanged
            self._commands.append(
                NotifyCustomer(
                    machine.session_id,
                    "call_ended",
                    {"reason": "operator_left", "state": machine.state.value},
                )
            )
        else:
            self._commands.append(
                NotifyOperator(
                    operator_id,
                    "call_ended",
                    {"session_id": machine.session_id, "reason": "customer_left"},
                )
            )
            self._release_operator(operator_id)
        self._queue_dirty = True

    def _close_media(self, seat: Seat) -> None:
        if seat.media_on:
            seat.media_on = False
            self._commands.append(CloseMedia(seat.machine.session_id))

    def _release_operator(self, operator_id: int) -> OperatorLink | None:
        link = self._operators.get(operator_id)
        if link is not None:
            link.session_id = None
            self._room.set_presence(operator_id, link.wants)
        return link
