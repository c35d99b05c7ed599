"""The identification session: a pure state machine.

It never awaits, never reads a clock and never touches I/O. Each transition method
takes ``now`` (epoch seconds), checks that the step is legal in the current state,
changes the state and queues events; drivers write :meth:`unsaved_events`, mark them
:meth:`saved` once written, and carry them out. An illegal step raises
:class:`~videoid.errors.IllegalTransition` and changes nothing. A driver whose write
failed returns the session to a :meth:`checkpoint` taken before the step
(:meth:`roll_back`), so that memory never holds a step the database does not.

The pre-call steps (consent … A/V test) are done in order; a deployment may require
only some of them (``required_steps``): the customer may enter the queue once the
last required step is done.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from ..errors import IllegalTransition, ValidationError
from .events import (
    AssignmentWithdrawn,
    CallDropped,
    CallStarted,
    CustomerLeftQueue,
    CustomerQueued,
    DecisionMade,
    Event,
    OperatorAssigned,
    Outcome,
    SessionEnded,
    State,
    StateChanged,
)

PRE_CALL_STEPS: tuple[State, ...] = (
    State.CONSENTED,
    State.DOCUMENTS_CAPTURED,
    State.DATA_CONFIRMED,
    State.SELFIE_TAKEN,
    State.AV_TESTED,
)
"""The pre-call steps, in the order a customer does them."""


def states_before(step: State, required: Iterable[State]) -> tuple[State, ...]:
    """The states from which the pre-call ``step`` may be done: earlier ones, skipping
    no required step. With every step required, only the one just before."""
    order = (State.CREATED, *PRE_CALL_STEPS)
    required = set(required)
    out: list[State] = []
    for state in reversed(order[: order.index(step)]):
        out.append(state)
        if state in required:
            break
    return tuple(out)


TERMINAL: frozenset[State] = frozenset(
    {State.REJECTED, State.COMPLETED, State.ABANDONED, State.EXPIRED}
)
BEFORE_DECISION: frozenset[State] = frozenset(
    {State.CREATED, *PRE_CALL_STEPS, State.WAITING, State.ASSIGNED, State.IN_CALL}
)
MAX_REASON_CODE = 64
MAX_REASON_TEXT = 2000


@dataclass(frozen=True)
class Checkpoint:
    """An :class:`IdentificationSession` as it was, for :meth:`~IdentificationSession.roll_back`."""

    state: State
    operator_id: int | None
    ready_state: State
    call_started_at: float | None
    customer_joined_at: float | None
    events: tuple[Event, ...]
    handled_by: frozenset[int] = frozenset()


class IdentificationSession:
    """One customer's identification, from invitation to signed contract."""

    def __init__(
        self,
        session_id: str,
        *,
        state: State = State.CREATED,
        required_steps: Iterable[State] = (),
        operator_id: int | None = None,
        ready_state: State | None = None,
        handled_by: Iterable[int] = (),
    ) -> None:
        required = tuple(required_steps)
        for step in required:
            if step not in PRE_CALL_STEPS:
                raise ValueError(f"{step} is not a pre-call step")
        self.session_id = session_id
        self.state = state
        self.operator_id = operator_id
        self.handled_by = frozenset(handled_by)
        """The operators who took its calls or decided it: none may review it (R15)."""
        self._required = tuple(s for s in PRE_CALL_STEPS if s in required)
        # the state the customer returns to when leaving the queue
        self._ready_state = ready_state or (self._required[-1] if self._required else State.CREATED)
        self._events: list[Event] = []
        self.call_started_at: float | None = None
        """When the call in progress was accepted (None when not known: after a restart)."""
        self.customer_joined_at: float | None = None
        """When the customer's media first reached the call in progress."""

    # -- queries ----------------------------------------------------------------------

    @property
    def ready_state(self) -> State:
        """The state in which the customer may enter the queue."""
        return self._ready_state

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    def connect_deadline(self, connect_seconds: float) -> float | None:
        """When the operator stops waiting for the customer to join the call just
        accepted, ``connect_seconds`` after the accept; None when no call waits for its
        customer (they joined, there is no call, or ``connect_seconds`` is 0: no limit)."""
        if (
            self.state is not State.IN_CALL
            or self.call_started_at is None
            or self.customer_joined_at is not None
            or connect_seconds <= 0
        ):
            return None
        return self.call_started_at + connect_seconds

    def pop_events(self) -> list[Event]:
        """Return and forget the events queued since the last call."""
        events, self._events = self._events, []
        return events

    def unsaved_events(self) -> list[Event]:
        """The events queued and not yet :meth:`saved`, oldest first."""
        return list(self._events)

    def saved(self, count: int) -> None:
        """The oldest ``count`` queued events are written: no longer queued."""
        del self._events[:count]

    def checkpoint(self) -> Checkpoint:
        """The session as it is now, events queued included."""
        return Checkpoint(
            self.state,
            self.operator_id,
            self._ready_state,
            self.call_started_at,
            self.customer_joined_at,
            tuple(self._events),
            self.handled_by,
        )

    def roll_back(self, to: Checkpoint) -> None:
        """Return to ``to``: the steps since, and their events, are undone."""
        self.state, self.operator_id, self._ready_state = to.state, to.operator_id, to.ready_state
        self.call_started_at, self.customer_joined_at = to.call_started_at, to.customer_joined_at
        self._events = list(to.events)
        self.handled_by = to.handled_by

    # -- pre-call steps ---------------------------------------------------------------

    def complete_step(self, step: State, now: float) -> None:
        """Record a pre-call step. Steps go in order; one not required may be skipped."""
        if step not in PRE_CALL_STEPS:
            raise IllegalTransition(f"{step.value} is not a pre-call step")
        order = (State.CREATED, *PRE_CALL_STEPS)
        if self.state not in order:
            self._illegal(step.value)
        current = order.index(self.state)
        target = order.index(step)
        skipped = [s for s in order[current + 1 : target] if s in self._required]
        if target <= current or skipped:
            self._illegal(step.value)
        self._move(step, now, "customer")

    # -- queue and call ---------------------------------------------------------------

    def enter_queue(self, now: float) -> None:
        order = (State.CREATED, *PRE_CALL_STEPS)
        last_required = self._required[-1] if self._required else State.CREATED
        if self.state not in order or order.index(self.state) < order.index(last_required):
            self._illegal("enter_queue")
        self._ready_state = self.state
        self._move(State.WAITING, now, "customer")
        self._events.append(CustomerQueued(self.session_id, now, at_head=False))

    def leave_queue(self, now: float) -> None:
        """The customer left the waiting room (closed the page, pressed leave)."""
        if self.state is State.ASSIGNED:
            self.withdraw_assignment(now, reason="customer_left")
        if self.state is not State.WAITING:
            self._illegal("leave_queue")
        self._move(self._ready_state, now, "customer")
        self._events.append(CustomerLeftQueue(self.session_id, now))

    def assign(self, operator_id: int, now: float) -> None:
        if self.state is not State.WAITING:
            self._illegal("assign")
        self.operator_id = operator_id
        self._move(State.ASSIGNED, now, "system")
        self._events.append(OperatorAssigned(self.session_id, operator_id, now))

    def withdraw_assignment(self, now: float, *, reason: str) -> None:
        """The assigned operator declined, timed out or went away before accepting."""
        if self.state is not State.ASSIGNED or self.operator_id is None:
            self._illegal("withdraw_assignment")
        operator_id = self.operator_id
        self.operator_id = None
        self._move(State.WAITING, now, "system")
        self._events.append(AssignmentWithdrawn(self.session_id, operator_id, now, reason))
        self._events.append(CustomerQueued(self.session_id, now, at_head=True))

    def start_call(self, operator_id: int, now: float) -> None:
        if self.state is not State.ASSIGNED:
            self._illegal("start_call")
        if operator_id != self.operator_id:
            self._illegal("start_call", "this session is assigned to another operator")
        self._move(State.IN_CALL, now, f"operator:{operator_id}")
        self.handled_by |= {operator_id}
        self._events.append(CallStarted(self.session_id, operator_id, now))
        self.call_started_at, self.customer_joined_at = now, None

    def customer_joined(self, now: float) -> None:
        """The customer's media reached the call: no connect deadline any more. Only the
        first time counts."""
        if self.state is not State.IN_CALL:
            self._illegal("customer_joined")
        if self.customer_joined_at is None:
            self.customer_joined_at = now

    def customer_gone(self, now: float, *, connect_seconds: float) -> None:
        """The customer did not join the accepted call within ``connect_seconds``: the
        call ends (``CallDropped`` with reason ``customer_gone``) and the session goes
        back to the state from which its customer may queue again. Raises
        IllegalTransition before the deadline, or when no call waits for its customer."""
        deadline = self.connect_deadline(connect_seconds)
        if deadline is None or now < deadline:
            self._illegal("customer_gone", "the call is not waiting for its customer")
        self._drop(now, "customer", "customer_gone")

    def drop_call(self, now: float, *, by: str) -> None:
        """A participant's connection was lost mid-call: the customer goes back to the
        head of the queue (reconnecting to the same operator comes with R12)."""
        if self.state is not State.IN_CALL or self.operator_id is None:
            self._illegal("drop_call")
        if by not in ("operator", "customer"):
            raise ValueError(by)
        self._drop(now, by, "connection_lost")

    def interrupted(self, now: float) -> None:
        """The server stopped while the session was waiting, offered or in a call
        (found so at the next start, with nobody connected): back to where the customer
        may queue again, recorded as the system's doing, not the customer's."""
        if self.state not in (State.WAITING, State.ASSIGNED, State.IN_CALL):
            self._illegal("interrupted")
        operator_id = self.operator_id
        self.operator_id = None
        self.call_started_at = self.customer_joined_at = None
        if operator_id is not None and self.state is State.IN_CALL:
            self._events.append(CallDropped(self.session_id, operator_id, now, "server", "restart"))
        self._move(self._ready_state, now, "system")

    def _drop(self, now: float, by: str, reason: str) -> None:
        operator_id = self.operator_id
        assert operator_id is not None
        self.operator_id = None
        self.call_started_at = self.customer_joined_at = None
        self._events.append(CallDropped(self.session_id, operator_id, now, by, reason))
        if by == "operator":
            self._move(State.WAITING, now, "system")
            self._events.append(CustomerQueued(self.session_id, now, at_head=True))
        else:
            self._move(self._ready_state, now, "system")

    # -- decision ---------------------------------------------------------------------

    def decide(
        self, operator_id: int, outcome: Outcome, reason_code: str, reason_text: str, now: float
    ) -> None:
        if self.state is not State.IN_CALL:
            self._illegal("decide")
        if operator_id != self.operator_id:
            self._illegal("decide", "only the operator in the call may decide")
        if not reason_code or len(reason_code) > MAX_REASON_CODE:
            raise ValidationError("reason_code is required (at most 64 characters)")
        if len(reason_text) > MAX_REASON_TEXT:
            raise ValidationError("reason_text is too long (at most 2000 characters)")
        state = State(outcome.value)
        self._move(state, now, f"operator:{operator_id}")
        self.handled_by |= {operator_id}
        self._events.append(
            DecisionMade(self.session_id, operator_id, outcome, reason_code, reason_text, now)
        )
        if state is State.REJECTED:
            self._events.append(SessionEnded(self.session_id, self.state, now))

    def review(
        self,
        supervisor_id: int,
        outcome: Outcome,
        reason_code: str,
        reason_text: str,
        now: float,
    ) -> None:
        """A suspended session decided by a second person (R15): approved or rejected.
        None of the operators who took its calls or decided it (:attr:`handled_by`)
        may review it."""
        if self.state is not State.SUSPENDED:
            self._illegal("review")
        if supervisor_id in self.handled_by:
            raise IllegalTransition(
                "a supervisor cannot review a session they handled", code="own_session"
            )
        if outcome is Outcome.SUSPENDED:
            raise ValidationError("a review approves or rejects", code="invalid_outcome")
        if not reason_code or len(reason_code) > MAX_REASON_CODE:
            raise ValidationError("reason_code is required (at most 64 characters)")
        if len(reason_text) > MAX_REASON_TEXT:
            raise ValidationError("reason_text is too long (at most 2000 characters)")
        self._move(State(outcome.value), now, f"supervisor:{supervisor_id}")
        self.handled_by |= {supervisor_id}
        self._events.append(
            DecisionMade(self.session_id, supervisor_id, outcome, reason_code, reason_text, now)
        )
        if outcome is Outcome.REJECTED:
            self._events.append(SessionEnded(self.session_id, self.state, now))

    # -- after the decision (filled in by the certificate issue) -----------------------

    def request_certificate(self, now: float) -> None:
        if self.state is not State.APPROVED:
            self._illegal("request_certificate")
        self._move(State.CERTIFICATE_REQUESTED, now, "customer")

    def sign_contract(self, now: float) -> None:
        if self.state is not State.CERTIFICATE_REQUESTED:
            self._illegal("sign_contract")
        self._move(State.CONTRACT_SIGNED, now, "customer")

    def complete(self, now: float) -> None:
        if self.state is not State.CONTRACT_SIGNED:
            self._illegal("complete")
        self._move(State.COMPLETED, now, "system")
        self._events.append(SessionEnded(self.session_id, self.state, now))

    # -- ends -------------------------------------------------------------------------

    def abandon(self, now: float) -> None:
        """The customer gave up before a decision."""
        if self.state not in BEFORE_DECISION:
            self._illegal("abandon")
        if self.state is State.IN_CALL:
            self._illegal("abandon", "a session in a call must be decided")
        self.operator_id = None
        self._move(State.ABANDONED, now, "customer")
        self._events.append(SessionEnded(self.session_id, self.state, now))

    def expire(self, now: float) -> None:
        """The invitation's validity ran out before the customer was identified."""
        if self.state not in BEFORE_DECISION or self.state is State.IN_CALL:
            self._illegal("expire")
        self.operator_id = None
        self._move(State.EXPIRED, now, "system")
        self._events.append(SessionEnded(self.session_id, self.state, now))

    # -- internals --------------------------------------------------------------------

    def _move(self, state: State, now: float, actor: str) -> None:
        previous, self.state = self.state, state
        self._events.append(StateChanged(self.session_id, previous, state, now, actor))

    def _illegal(self, step: str, why: str | None = None) -> NoReturn:
        raise IllegalTransition(
            why or f"{step} is not allowed while the session is {self.state.value}"
        )
