"""The call desk's rules, pure: no I/O, no sleeps, time passed in (issue 15). Offers
that time out, the connect timeout, the reconnect window (R12), the random draw (R11),
the four-eyes rule (R15) and the checkpoint an asked step is undone to."""

from __future__ import annotations

import random
from typing import Any

import pytest

from videoid.db import OperatorRecord, SessionRecord
from videoid.desk import (
    CallDesk,
    CloseMedia,
    Command,
    DeskTimes,
    EvidenceChanged,
    ForgetIfIdle,
    NotifyCustomer,
    NotifyOperator,
    OpenMedia,
    Persist,
    RecordGap,
)
from videoid.errors import AlreadyTaken, IllegalTransition, NotAssigned, SessionInUse
from videoid.queue import Presence
from videoid.session import State

TIMES = DeskTimes(offer_timeout_seconds=30, connect_seconds=20, reconnect_seconds=60)


def ice(who: str, now: float, customer: bool) -> dict[str, Any]:
    return {"ice_servers": [], "who": who}


def desk(seed: int = 1) -> CallDesk:
    return CallDesk(TIMES, ice, rng=random.Random(seed))


def record(session_id: str, state: State = State.AV_TESTED) -> SessionRecord:
    return SessionRecord(session_id, 1, state.value, State.AV_TESTED.value, 1e12, None, 0, 0)


def operator(op_id: int) -> OperatorRecord:
    return OperatorRecord(op_id, f"op{op_id}", "operator", "")


def drain(d: CallDesk) -> list[Command]:
    """The commands queued, with the writes acknowledged (as the driver does)."""
    out = list(d.commands())
    for command in out:
        if isinstance(command, Persist):
            command.machine.saved(len(command.machine.unsaved_events()))
        elif isinstance(command, ForgetIfIdle):
            d.forget_if_idle(command.session_id)
            out += list(d.commands())
    return out


def events(commands: list[Command]) -> list[tuple[str, str]]:
    return [
        (type(c).__name__, c.event)
        for c in commands
        if isinstance(c, NotifyCustomer | NotifyOperator)
    ]


def offered(d: CallDesk, session_id: str = "s1", op_id: int = 7, now: float = 100.0) -> None:
    """A customer queued and offered to the one available operator."""
    d.handle_customer_connected(record(session_id), f"c-{session_id}", now)
    d.handle_operator_connected(operator(op_id), f"o-{op_id}")
    d.handle_presence(op_id, "available")
    d.handle_join_queue(session_id, now)
    drain(d)
    draw = d.offer_next(now)
    assert draw is not None and (draw.session_id, draw.operator_id) == (session_id, op_id)
    drain(d)


def in_call(d: CallDesk, now: float = 100.0) -> None:
    offered(d, now=now)
    d.handle_accept(7, "s1", now)
    drain(d)


def test_an_offer_not_accepted_in_time_is_withdrawn_and_the_operator_paused() -> None:
    d = desk()
    offered(d)
    assert d.get_timer() == 130.0
    d.handle_timer(129.9)
    assert drain(d) == []
    d.handle_timer(130.0)
    commands = drain(d)
    assert d.machine("s1").state is State.WAITING  # type: ignore[union-attr]
    withdrawn = [c for c in commands if isinstance(c, NotifyOperator)]
    assert withdrawn[0].data == {
        "session_id": "s1",
        "reason": "offer_timeout",
        "presence": "paused",
    }
    assert d.presence(7) is Presence.PAUSED
    assert d.offer_next(130.0) is None  # nobody available: the customer waits, at the head
    assert d.customer_view("s1", 130.0)["position"] == 1
    assert d.get_timer() is None


def test_the_draw_is_uniform_over_available_operators_and_recorded() -> None:
    d = desk(seed=3)
    for op_id in (3, 5, 9):
        d.handle_operator_connected(operator(op_id), f"o{op_id}")
        d.handle_presence(op_id, "available")
    d.handle_customer_connected(record("s1"), "c1", 0)
    d.handle_join_queue("s1", 0)
    drain(d)
    draw = d.offer_next(1.0)
    assert draw is not None and draw.candidates == (3, 5, 9)
    assert draw.operator_id == draw.candidates[draw.index]
    (persist,) = [c for c in drain(d) if isinstance(c, Persist)]
    assert persist.asked and persist.assignment == draw  # written with the session's step


def test_accept_opens_the_media_and_a_second_accept_is_refused() -> None:
    d = desk()
    offered(d)
    d.handle_operator_connected(operator(8), "o-8")
    with pytest.raises(AlreadyTaken):
        d.handle_accept(8, "s1", 101)
    with pytest.raises(NotAssigned):
        d.handle_accept(7, "never-offered", 101)
    view = d.handle_accept(7, "s1", 101)
    assert view["state"] == "in_call"
    commands = drain(d)
    assert isinstance(commands[0], Persist) and commands[0].asked  # written before the rest
    assert OpenMedia("s1", 7) in commands
    assert ("NotifyCustomer", "call_started") in events(commands)
    assert d.presence(7) is Presence.BUSY


def test_a_customer_who_never_joins_the_call_ends_it_after_connect_seconds() -> None:
    d = desk()
    in_call(d)
    assert d.get_timer() == 120.0
    d.handle_timer(119.0)
    assert drain(d) == []
    d.handle_timer(120.0)
    commands = drain(d)
    assert CloseMedia("s1") in commands
    assert ("NotifyOperator", "call_ended") in events(commands)
    assert d.machine("s1").state is State.AV_TESTED  # type: ignore[union-attr]
    assert d.presence(7) is Presence.AVAILABLE  # released to what they chose


def test_a_customer_whose_media_arrived_has_no_connect_deadline() -> None:
    d = desk()
    in_call(d)
    d.handle_customer_media("s1", 105.0)
    assert d.get_timer() is None
    d.handle_timer(1000.0)
    assert drain(d) == []


def test_a_customer_who_comes_back_within_the_window_keeps_the_call_with_a_gap() -> None:
    d = desk()
    in_call(d)
    d.handle_customer_media("s1", 101.0)
    d.handle_customer_disconnected("s1", "c-s1", 110.0)
    assert events(drain(d)) == [("NotifyOperator", "customer_reconnecting")]
    assert d.get_timer() == 170.0
    d.handle_timer(169.0)
    assert drain(d) == []
    assert d.handle_customer_connected(record("s1", State.IN_CALL), "c-again", 125.0) is None
    commands = drain(d)
    gap = {"from": 110.0, "to": 125.0, "seconds": 15.0, "resumed": True}
    assert RecordGap("s1", "customer", gap, 125.0) in commands
    assert ("NotifyOperator", "customer_back") in events(commands)
    assert d.call_operator("s1") == 7


def test_a_customer_not_back_within_the_window_ends_the_call() -> None:
    d = desk()
    in_call(d)
    d.handle_customer_media("s1", 101.0)
    d.handle_customer_disconnected("s1", "c-s1", 110.0)
    drain(d)
    d.handle_timer(170.0)
    commands = drain(d)
    gap = {"from": 110.0, "to": 170.0, "seconds": 60.0, "resumed": False}
    assert RecordGap("s1", "system", gap, 170.0) in commands
    assert CloseMedia("s1") in commands
    assert ("NotifyOperator", "call_ended") in events(commands)
    assert d.machine("s1") is None  # nobody connected, all written: forgotten
    assert d.held() == {"sessions": 0, "operators": 1, "queued": 0, "interrupted": 0}


def test_a_second_customer_connection_is_refused_unless_in_a_call() -> None:
    d = desk()
    d.handle_customer_connected(record("s1"), "tab-1", 0)
    with pytest.raises(SessionInUse):
        d.handle_customer_connected(record("s1"), "tab-2", 0)
    d2 = desk()
    in_call(d2)
    # in a call, a new connection takes over from one that has not noticed it died
    assert d2.handle_customer_connected(record("s1"), "tab-2", 101) == "c-s1"


def test_four_eyes_whoever_handled_a_session_cannot_review_it() -> None:
    d = desk()
    in_call(d)
    d.handle_decide(7, "s1", "suspended", "needs_review", "", 140.0)
    commands = drain(d)
    assert EvidenceChanged("s1", "decision") in commands
    assert CloseMedia("s1") in commands
    suspended = record("s1", State.SUSPENDED)
    machine = d.machine_of(SessionRecord(**{**suspended.__dict__, "handled_by": frozenset({7})}))
    with pytest.raises(IllegalTransition) as refused:
        d.handle_review(machine, 7, "approved", "verified", "", 200.0)
    assert refused.value.code == "own_session"
    assert d.handle_review(machine, 8, "approved", "verified", "", 200.0)["state"] == "approved"
    assert machine.handled_by == {7, 8}


def test_an_asked_step_is_undone_to_its_checkpoint() -> None:
    d = desk()
    offered(d)
    before = d.checkpoint()
    d.handle_accept(7, "s1", 101)
    d.restore(before)  # its write failed: as if never asked
    assert d.machine("s1").state is State.ASSIGNED  # type: ignore[union-attr]
    assert d.presence(7) is Presence.OFFERED
    assert d.next_command() is None
    d.handle_accept(7, "s1", 102)  # and may be asked again
    assert d.call_operator("s1") == 7


def test_a_decision_needs_the_operator_in_the_call() -> None:
    d = desk()
    in_call(d)
    with pytest.raises(NotAssigned):
        d.check_decision(8, "s1")
    d.check_decision(7, "s1")


def test_an_operator_leaving_mid_call_puts_the_customer_back_at_the_head() -> None:
    d = desk()
    in_call(d)
    d.handle_customer_connected(record("s0"), "c-s0", 120.0)
    d.handle_join_queue("s0", 120.0)
    d.handle_operator_disconnected(7, "o-7", 150.0)
    commands = drain(d)
    assert CloseMedia("s1") in commands
    assert ("NotifyCustomer", "call_ended") in events(commands)
    assert d.customer_view("s1", 150.0)["position"] == 1
    assert d.customer_view("s0", 150.0)["position"] == 2


def test_both_dropped_the_customer_keeps_the_head_and_is_drawn_only_when_back() -> None:
    d = desk()
    in_call(d)
    d.handle_customer_media("s1", 101.0)
    d.handle_customer_disconnected("s1", "c-s1", 110.0)
    d.handle_operator_disconnected(7, "o-7", 111.0)
    drain(d)
    d.handle_operator_connected(operator(8), "o-8")
    d.handle_presence(8, "available")
    assert d.offer_next(112.0) is None  # an operator would accept into an empty call
    assert d.get_timer() == 170.0  # the window still runs from the drop
    d.handle_customer_connected(record("s1", State.WAITING), "c-back", 150.0)
    draw = d.offer_next(150.0)
    assert draw is not None and (draw.session_id, draw.operator_id) == ("s1", 8)


def test_queue_updates_are_coalesced_to_one_a_second() -> None:
    d = desk()
    for n in range(5):
        d.handle_customer_connected(record(f"s{n}"), f"c{n}", 0)
        d.handle_join_queue(f"s{n}", 0)
        d.flush_queue(0, monotonic=10.0 + n / 10)
    told = [c for c in drain(d) if isinstance(c, NotifyCustomer) and c.event == "queue"]
    assert [c.session_id for c in told] == ["s0"]  # the first; the rest within the second
    d.flush_queue(0, monotonic=11.0)
    told = [c for c in drain(d) if isinstance(c, NotifyCustomer) and c.event == "queue"]
    assert [c.session_id for c in told] == ["s1", "s2", "s3", "s4"]  # each once, s0 unchanged
