"""The waiting room: order, positions, estimates, and the random draw (R11)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from videoid.errors import QueueError
from videoid.queue import Presence, WaitingRoom


def room(seed: int = 1) -> WaitingRoom:
    return WaitingRoom(random.Random(seed), initial_handle_seconds=300)


def test_order_positions_and_head_requeue() -> None:
    r = room()
    for i, sid in enumerate("abc"):
        r.add(sid, float(i))
    assert [r.position(s) for s in "abc"] == [1, 2, 3]
    r.add("d", 10.0, at_head=True)
    assert [e.session_id for e in r.entries()] == ["d", "a", "b", "c"]
    assert r.remove("a") and not r.remove("a")
    assert [r.position(s) for s in "dbc"] == [1, 2, 3]
    with pytest.raises(QueueError):
        r.add("b", 11.0)
    with pytest.raises(QueueError):
        r.position("a")


def test_estimated_wait_shares_calls_among_online_operators() -> None:
    r = room()
    for sid in "abcd":
        r.add(sid, 0.0)
    assert r.estimated_wait_seconds("d") == 4 * 300  # nobody online: as if one
    r.set_presence(1, Presence.BUSY)
    r.set_presence(2, Presence.PAUSED)
    assert r.estimated_wait_seconds("d") == 4 * 300 / 2
    r.record_call_length(100)
    assert r.estimated_wait_seconds("a") < 300


def test_no_draw_without_customer_or_available_operator() -> None:
    r = room()
    r.set_presence(1, Presence.AVAILABLE)
    assert r.draw(0.0) is None
    r.add("a", 0.0)
    r.set_presence(1, Presence.PAUSED)
    assert r.draw(0.0) is None
    r.set_presence(1, Presence.AVAILABLE)
    draw = r.draw(5.0)
    assert draw is not None and (draw.session_id, draw.operator_id, draw.at) == ("a", 1, 5.0)
    assert r.presence(1) is Presence.OFFERED and "a" not in r


def test_draw_is_uniform_among_eligible_and_recorded() -> None:
    r = room(seed=42)
    counts: Counter[int] = Counter()
    for i in range(3000):
        for op in (3, 5, 9):
            r.set_presence(op, Presence.AVAILABLE)
        r.set_presence(4, Presence.BUSY)  # never eligible
        r.add(f"s{i}", float(i))
        draw = r.draw(float(i))
        assert draw is not None
        assert draw.candidates == (3, 5, 9)
        assert draw.candidates[draw.index] == draw.operator_id
        counts[draw.operator_id] += 1
    assert set(counts) == {3, 5, 9}
    # each of the three gets a third, within a wide margin (about 6 standard deviations)
    assert all(850 <= n <= 1150 for n in counts.values()), counts


def test_the_draw_depends_on_the_rng_not_on_order() -> None:
    picks = set()
    for seed in range(20):
        r = room(seed)
        for op in (1, 2, 3, 4):
            r.set_presence(op, Presence.AVAILABLE)
        r.add("a", 0.0)
        draw = r.draw(0.0)
        assert draw is not None
        picks.add(draw.operator_id)
    assert len(picks) > 1


def test_a_customer_who_is_gone_keeps_the_place_but_is_not_drawn() -> None:
    """Issue 14.9: an operator is never offered a session nobody is connected to."""
    r = room()
    r.add("a", 0.0)
    r.add("b", 1.0)
    r.add("g", 2.0, at_head=True, connected=False)  # re-queued after the call dropped
    assert [e.session_id for e in r.entries()] == ["g", "a", "b"]
    assert not r.is_connected("g") and r.is_connected("a")
    # positions count the customers drawn before: "a" is next
    assert [r.position(s) for s in "ab"] == [1, 2]
    r.set_presence(1, Presence.AVAILABLE)
    assert r.estimated_wait_seconds("a") == 0.0
    draw = r.draw(3.0)
    assert draw is not None and draw.session_id == "a"
    r.set_presence(2, Presence.AVAILABLE)
    r.set_connected("g", True)  # back with the same link: first again
    assert r.position("g") == 1
    draw = r.draw(4.0)
    assert draw is not None and draw.session_id == "g"


def test_nobody_is_drawn_while_only_gone_customers_wait() -> None:
    r = room()
    r.set_presence(1, Presence.AVAILABLE)
    r.add("g", 0.0, connected=False)
    assert r.draw(1.0) is None and r.presence(1) is Presence.AVAILABLE and "g" in r
    assert r.remove("g") and not r.is_connected("g")
    r.add("g", 2.0)  # queued again later: connected, whatever it was before
    assert r.is_connected("g")
    with pytest.raises(QueueError):
        r.set_connected("x", True)


def test_the_first_measured_call_replaces_the_guess_and_a_restart_keeps_what_was_measured() -> None:
    """Issue 20.5: with 100 waiting and calls of a minute, the estimate must not start
    from the configured 300 s and take twenty calls to settle."""
    r = room()
    for i in range(100):
        r.add(f"s{i}", 0.0)
    for op in (1, 2, 3):
        r.set_presence(op, Presence.BUSY)
    r.record_call_length(60)
    assert r.handle_seconds == 60
    assert r.estimated_wait_seconds("s99") == round(100 * 60 / 3, 1)
    r.record_call_length(40)
    assert r.handle_seconds == 50  # the mean of the calls so far
    for _ in range(100):
        r.record_call_length(30)
    assert abs(r.handle_seconds - 30) < 0.1  # the old ones fade out
    restarted = room()
    restarted.seed_call_lengths([60, 40])
    assert restarted.handle_seconds == 50


def test_a_draw_chosen_changes_nothing_until_it_is_taken() -> None:
    """Issue 20.8: the driver writes the draw before the room changes; a draw not
    written leaves the customer at their place and the operator available."""
    r = room()
    r.add("a", 0.0)
    r.add("b", 1.0)
    r.set_presence(1, Presence.AVAILABLE)
    draw = r.choose(2.0)
    assert draw is not None and draw.session_id == "a"
    assert [e.session_id for e in r.entries()] == ["a", "b"]
    assert r.presence(1) is Presence.AVAILABLE and r.position("a") == 1
    r.take(draw)
    assert [e.session_id for e in r.entries()] == ["b"] and r.presence(1) is Presence.OFFERED
