"""The identification session state machine: every legal and illegal transition, with a
fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from videoid.clock import FakeClock
from videoid.errors import IllegalTransition, ValidationError
from videoid.session import PRE_CALL_STEPS, IdentificationSession, Outcome, State
from videoid.session.events import (
    AssignmentWithdrawn,
    CallDropped,
    CallStarted,
    CustomerLeftQueue,
    CustomerQueued,
    DecisionMade,
    OperatorAssigned,
    SessionEnded,
    StateChanged,
)

OP = 7
Action = Callable[[IdentificationSession, float], None]

ACTIONS: dict[str, Action] = {
    "enter_queue": lambda s, t: s.enter_queue(t),
    "leave_queue": lambda s, t: s.leave_queue(t),
    "assign": lambda s, t: s.assign(OP, t),
    "withdraw": lambda s, t: s.withdraw_assignment(t, reason="declined"),
    "start_call": lambda s, t: s.start_call(OP, t),
    "drop_by_operator": lambda s, t: s.drop_call(t, by="operator"),
    "drop_by_customer": lambda s, t: s.drop_call(t, by="customer"),
    "interrupted": lambda s, t: s.interrupted(t),
    "approve": lambda s, t: s.decide(OP, Outcome.APPROVED, "ok", "", t),
    "reject": lambda s, t: s.decide(OP, Outcome.REJECTED, "face_mismatch", "", t),
    "suspend": lambda s, t: s.decide(OP, Outcome.SUSPENDED, "needs_review", "", t),
    "request_certificate": lambda s, t: s.request_certificate(t),
    "sign_contract": lambda s, t: s.sign_contract(t),
    "complete": lambda s, t: s.complete(t),
    "abandon": lambda s, t: s.abandon(t),
    "expire": lambda s, t: s.expire(t),
    **{
        f"step_{step.value}": (lambda st: lambda s, t: s.complete_step(st, t))(step)
        for step in PRE_CALL_STEPS
    },
}

# (state, action) -> resulting state, for a session that requires no pre-call step
LEGAL: dict[tuple[State, str], State] = {
    (State.WAITING, "leave_queue"): State.CREATED,
    (State.ASSIGNED, "leave_queue"): State.CREATED,
    (State.WAITING, "assign"): State.ASSIGNED,
    (State.ASSIGNED, "withdraw"): State.WAITING,
    (State.ASSIGNED, "start_call"): State.IN_CALL,
    (State.IN_CALL, "drop_by_operator"): State.WAITING,
    (State.IN_CALL, "drop_by_customer"): State.CREATED,
    # the server stopped: found so at the next start, back to where the customer queues
    (State.WAITING, "interrupted"): State.CREATED,
    (State.ASSIGNED, "interrupted"): State.CREATED,
    (State.IN_CALL, "interrupted"): State.CREATED,
    (State.IN_CALL, "approve"): State.APPROVED,
    (State.IN_CALL, "reject"): State.REJECTED,
    (State.IN_CALL, "suspend"): State.SUSPENDED,
    (State.APPROVED, "request_certificate"): State.CERTIFICATE_REQUESTED,
    (State.CERTIFICATE_REQUESTED, "sign_contract"): State.CONTRACT_SIGNED,
    (State.CONTRACT_SIGNED, "complete"): State.COMPLETED,
}
BEFORE_CALL = (State.CREATED, *PRE_CALL_STEPS)
for _i, _state in enumerate(BEFORE_CALL):
    LEGAL[(_state, "enter_queue")] = State.WAITING
    for _step in BEFORE_CALL[_i + 1 :]:
        LEGAL[(_state, f"step_{_step.value}")] = _step
for _state in (*BEFORE_CALL, State.WAITING, State.ASSIGNED):
    LEGAL[(_state, "abandon")] = State.ABANDONED
    LEGAL[(_state, "expire")] = State.EXPIRED


def session_in(state: State) -> IdentificationSession:
    operator = OP if state in (State.ASSIGNED, State.IN_CALL) else None
    return IdentificationSession("s1", state=state, operator_id=operator)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition(state: State, action: str) -> None:
    clock = FakeClock()
    session = session_in(state)
    expected = LEGAL.get((state, action))
    if expected is None:
        with pytest.raises(IllegalTransition):
            ACTIONS[action](session, clock.now())
        assert session.state is state
        assert session.pop_events() == []
    else:
        ACTIONS[action](session, clock.now())
        assert session.state is expected
        changes = [e for e in session.pop_events() if isinstance(e, StateChanged)]
        assert changes[-1].state is expected and changes[-1].at == clock.now()


def test_full_life_events_and_times() -> None:
    clock = FakeClock()
    s = IdentificationSession("s1")
    s.enter_queue(clock.now())
    clock.advance(30)
    s.assign(OP, clock.now())
    clock.advance(5)
    s.start_call(OP, clock.now())
    clock.advance(240)
    s.decide(OP, Outcome.APPROVED, "identity_verified", "all good", clock.now())
    events = s.pop_events()
    kinds = [type(e) for e in events if not isinstance(e, StateChanged)]
    assert kinds == [CustomerQueued, OperatorAssigned, CallStarted, DecisionMade]
    changes = [
        (e.previous, e.state, e.at - 1_800_000_000) for e in events if isinstance(e, StateChanged)
    ]
    assert changes == [
        (State.CREATED, State.WAITING, 0),
        (State.WAITING, State.ASSIGNED, 30),
        (State.ASSIGNED, State.IN_CALL, 35),
        (State.IN_CALL, State.APPROVED, 275),
    ]
    decision = next(e for e in events if isinstance(e, DecisionMade))
    assert (decision.operator_id, decision.reason_code, decision.reason_text) == (
        OP,
        "identity_verified",
        "all good",
    )


def test_operator_drop_requeues_at_head_and_customer_drop_does_not() -> None:
    s = session_in(State.IN_CALL)
    s.drop_call(1.0, by="operator")
    events = s.pop_events()
    assert any(isinstance(e, CallDropped) and e.by == "operator" for e in events)
    assert any(isinstance(e, CustomerQueued) and e.at_head for e in events)
    assert s.operator_id is None
    s = session_in(State.IN_CALL)
    s.drop_call(1.0, by="customer")
    assert not any(isinstance(e, CustomerQueued) for e in s.pop_events())


def test_withdraw_and_leave_emit_their_events() -> None:
    s = session_in(State.ASSIGNED)
    s.withdraw_assignment(1.0, reason="offer_timeout")
    events = s.pop_events()
    assert any(isinstance(e, AssignmentWithdrawn) and e.reason == "offer_timeout" for e in events)
    s.leave_queue(2.0)
    assert any(isinstance(e, CustomerLeftQueue) for e in s.pop_events())


def test_only_the_assigned_operator_starts_and_decides() -> None:
    s = session_in(State.ASSIGNED)
    with pytest.raises(IllegalTransition):
        s.start_call(OP + 1, 1.0)
    s.start_call(OP, 1.0)
    with pytest.raises(IllegalTransition):
        s.decide(OP + 1, Outcome.APPROVED, "ok", "", 2.0)
    assert s.state is State.IN_CALL


@pytest.mark.parametrize("code,text", [("", ""), ("x" * 65, ""), ("ok", "x" * 2001)])
def test_decision_reason_is_validated(code: str, text: str) -> None:
    s = session_in(State.IN_CALL)
    with pytest.raises(ValidationError):
        s.decide(OP, Outcome.REJECTED, code, text, 1.0)
    assert s.state is State.IN_CALL and s.pop_events() == []


def test_rejection_and_completion_end_the_session() -> None:
    s = session_in(State.IN_CALL)
    s.decide(OP, Outcome.REJECTED, "face_mismatch", "", 1.0)
    assert s.is_terminal
    assert any(isinstance(e, SessionEnded) for e in s.pop_events())


def test_required_steps_must_be_done_in_order_before_queueing() -> None:
    required = (State.CONSENTED, State.DOCUMENTS_CAPTURED, State.AV_TESTED)
    s = IdentificationSession("s1", required_steps=required)
    with pytest.raises(IllegalTransition):
        s.enter_queue(1.0)
    with pytest.raises(IllegalTransition):
        s.complete_step(State.DOCUMENTS_CAPTURED, 1.0)  # consent first
    s.complete_step(State.CONSENTED, 1.0)
    with pytest.raises(IllegalTransition):
        s.complete_step(State.CONSENTED, 2.0)  # twice
    s.complete_step(State.DOCUMENTS_CAPTURED, 2.0)
    s.complete_step(State.SELFIE_TAKEN, 3.0)  # not required: the data check may be skipped
    with pytest.raises(IllegalTransition):
        s.enter_queue(4.0)  # the A/V test is required
    s.complete_step(State.AV_TESTED, 4.0)
    s.enter_queue(5.0)
    s.leave_queue(6.0)
    assert s.state is State.AV_TESTED  # back where the customer may queue again


def test_states_before_a_step_skip_no_required_step() -> None:
    from videoid.session import states_before

    every = (
        State.CONSENTED,
        State.DOCUMENTS_CAPTURED,
        State.DATA_CONFIRMED,
        State.SELFIE_TAKEN,
        State.AV_TESTED,
    )
    assert states_before(State.SELFIE_TAKEN, every) == (State.DATA_CONFIRMED,)
    assert states_before(State.CONSENTED, every) == (State.CREATED,)
    # without the document and data steps, the selfie follows consent
    assert states_before(State.SELFIE_TAKEN, (State.CONSENTED, State.SELFIE_TAKEN)) == (
        State.DATA_CONFIRMED,
        State.DOCUMENTS_CAPTURED,
        State.CONSENTED,
    )
    assert states_before(State.AV_TESTED, ()) == (
        State.SELFIE_TAKEN,
        State.DATA_CONFIRMED,
        State.DOCUMENTS_CAPTURED,
        State.CONSENTED,
        State.CREATED,
    )


def test_a_call_waits_for_its_customer_connect_seconds_then_ends() -> None:
    """Issue 14.9: an accepted call whose customer does not join within connect_seconds
    ends with reason customer_gone; the session goes back to where its customer may
    queue again (not to the queue: nobody would be there to offer)."""
    clock = FakeClock()
    s = IdentificationSession("s1", required_steps=(State.CONSENTED,))
    s.complete_step(State.CONSENTED, clock.now())
    s.enter_queue(clock.now())
    s.assign(OP, clock.now())
    clock.advance(3)
    s.start_call(OP, clock.now())
    accepted = clock.now()
    s.pop_events()
    assert s.connect_deadline(20) == accepted + 20
    assert s.connect_deadline(0) is None  # no limit
    clock.advance(19.9)
    with pytest.raises(IllegalTransition):
        s.customer_gone(clock.now(), connect_seconds=20)
    assert s.state is State.IN_CALL and s.pop_events() == []
    clock.advance(0.1)
    s.customer_gone(clock.now(), connect_seconds=20)
    assert s.state is State.CONSENTED and s.operator_id is None
    events = s.pop_events()
    [dropped] = [e for e in events if isinstance(e, CallDropped)]
    assert (dropped.by, dropped.reason, dropped.operator_id, dropped.at) == (
        "customer",
        "customer_gone",
        OP,
        clock.now(),
    )
    assert not any(isinstance(e, CustomerQueued) for e in events)
    assert s.connect_deadline(20) is None
    # the customer queues again: a new call, a new deadline
    s.enter_queue(clock.now())
    s.assign(OP, clock.now())
    s.start_call(OP, clock.now())
    assert s.connect_deadline(20) == clock.now() + 20


def test_a_customer_who_joined_has_no_connect_deadline() -> None:
    clock = FakeClock()
    s = session_in(State.ASSIGNED)
    s.start_call(OP, clock.now())
    clock.advance(5)
    s.customer_joined(clock.now())
    joined = clock.now()
    clock.advance(60)
    s.customer_joined(clock.now())  # only the first time counts
    assert s.customer_joined_at == joined and s.connect_deadline(20) is None
    with pytest.raises(IllegalTransition):
        s.customer_gone(clock.now(), connect_seconds=20)
    assert s.state is State.IN_CALL
    # a call dropped by a connection keeps its reason apart from customer_gone
    s.drop_call(clock.now(), by="operator")
    [dropped] = [e for e in s.pop_events() if isinstance(e, CallDropped)]
    assert dropped.reason == "connection_lost"
    with pytest.raises(IllegalTransition):
        s.customer_joined(clock.now())  # no call


def test_a_call_known_only_from_the_database_has_no_connect_deadline() -> None:
    """After a restart the accept's time is unknown: recovery, not this rule, ends it."""
    s = session_in(State.IN_CALL)
    assert s.connect_deadline(20) is None
    with pytest.raises(IllegalTransition):
        s.customer_gone(1e12, connect_seconds=20)


def test_a_step_whose_write_failed_is_rolled_back_with_its_events() -> None:
    """Issue 20.8: a driver takes a checkpoint, steps, and returns to it when the write
    fails; the events stay queued until they are saved (the ones written are dropped,
    later ones kept)."""
    s = IdentificationSession("s1")
    s.enter_queue(1.0)
    s.assign(OP, 2.0)
    s.start_call(OP, 3.0)
    queued = s.unsaved_events()
    s.saved(len(queued) - 1)  # all but the last written
    assert s.unsaved_events() == queued[-1:]
    before = s.checkpoint()
    s.decide(OP, Outcome.REJECTED, "face_mismatch", "", 4.0)
    assert s.state is State.REJECTED and len(s.unsaved_events()) == 4
    s.roll_back(before)
    assert (s.state, s.operator_id, s.call_started_at) == (State.IN_CALL, OP, 3.0)
    assert s.unsaved_events() == queued[-1:]
    s.decide(OP, Outcome.REJECTED, "face_mismatch", "", 5.0)  # the same step, again
    assert s.state is State.REJECTED
    assert [type(e) for e in s.pop_events()][-2:] == [DecisionMade, SessionEnded]


def _suspended_by(*operators: int) -> IdentificationSession:
    """A session whose calls the ``operators`` took in turn (each dropped but the last,
    who suspended it)."""
    session, clock = IdentificationSession("s1"), FakeClock()
    session.enter_queue(clock.now())
    for n, operator in enumerate(operators):
        session.assign(operator, clock.now())
        session.start_call(operator, clock.now())
        if n < len(operators) - 1:
            session.drop_call(clock.now(), by="operator")
    session.decide(operators[-1], Outcome.SUSPENDED, "needs_review", "", clock.now())
    return session


def test_no_one_who_handled_a_session_reviews_it() -> None:
    """Four eyes (R15): the operators of every call of the session, not only the one who
    suspended it, are kept on it and may not review it."""
    session = _suspended_by(3, 8)
    assert session.handled_by == {3, 8}
    for handler in (3, 8):
        with pytest.raises(IllegalTransition) as own:
            session.review(handler, Outcome.APPROVED, "identity_verified", "", 5.0)
        assert own.value.code == "own_session"
    assert session.state is State.SUSPENDED and session.handled_by == {3, 8}
    session.review(11, Outcome.REJECTED, "document_invalid", "", 6.0)
    assert session.state is State.REJECTED and session.handled_by == {3, 8, 11}
    decision = [e for e in session.pop_events() if isinstance(e, DecisionMade)][-1]
    assert (decision.operator_id, decision.outcome) == (11, Outcome.REJECTED)


def test_who_handled_it_comes_back_from_storage_and_rolls_back() -> None:
    stored = _suspended_by(4)
    # as the call center makes it from its database record
    session = IdentificationSession(
        "s1", state=stored.state, operator_id=stored.operator_id, handled_by=stored.handled_by
    )
    with pytest.raises(IllegalTransition):
        session.review(4, Outcome.APPROVED, "identity_verified", "", 5.0)
    before = session.checkpoint()
    session.review(9, Outcome.APPROVED, "identity_verified", "", 5.0)
    session.roll_back(before)  # the review could not be written
    assert session.handled_by == {4} and session.state is State.SUSPENDED
