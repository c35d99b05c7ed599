"""The supervisor dashboard's figures, from recorded transitions."""

from __future__ import annotations

import time

from videoid.operator_console.dashboard import figures, today_start


def test_today_start_is_local_midnight() -> None:
    now = time.mktime((2026, 11, 26, 15, 30, 0, 0, 0, -1))
    assert today_start(now) == time.mktime((2026, 11, 26, 0, 0, 0, 0, 0, -1))


def test_figures_from_transitions() -> None:
    day = time.mktime((2026, 11, 26, 0, 0, 0, 0, 0, -1))
    h = 3600.0
    rows = [
        # queued yesterday at 23:50, called at 00:10 (20 min wait), approved 00:20
        ("a", "av_tested", "waiting", day - 600, "customer"),
        ("a", "waiting", "assigned", day + 590, "system"),
        ("a", "assigned", "in_call", day + 600, "operator:1"),
        ("a", "in_call", "approved", day + 1200, "operator:1"),
        # queued 10:00, called 10:02, rejected 10:12
        ("b", "av_tested", "waiting", day + 10 * h, "customer"),
        ("b", "waiting", "assigned", day + 10 * h + 100, "system"),
        ("b", "assigned", "in_call", day + 10 * h + 120, "operator:2"),
        ("b", "in_call", "rejected", day + 10 * h + 720, "operator:2"),
        # suspended at 11:10, then approved by a supervisor
        ("c", "av_tested", "waiting", day + 11 * h, "customer"),
        ("c", "waiting", "assigned", day + 11 * h + 30, "system"),
        ("c", "assigned", "in_call", day + 11 * h + 60, "operator:1"),
        ("c", "in_call", "suspended", day + 11 * h + 660, "operator:1"),
        ("c", "suspended", "approved", day + 12 * h, "supervisor:3"),
        # a call that dropped: no outcome
        ("d", "av_tested", "waiting", day + 11 * h, "customer"),
        ("d", "waiting", "assigned", day + 11 * h + 5, "system"),
        ("d", "assigned", "in_call", day + 11 * h + 10, "operator:2"),
        ("d", "in_call", "av_tested", day + 11 * h + 20, "system"),
    ]
    f = figures(rows, day)
    assert f["handled"] == 3
    assert f["outcomes"] == {"approved": 1, "rejected": 1, "suspended": 1}
    assert f["rates"]["approved"] == round(1 / 3, 3)
    assert f["reviews"] == {"approved": 1, "rejected": 0}
    assert f["average_wait_seconds"] == round((1200 + 120 + 60 + 10) / 4, 1)
    assert f["average_handle_seconds"] == round((600 + 600 + 600) / 3, 1)
    assert f["calls_by_hour"][0] == 1 and f["calls_by_hour"][10] == 1
    assert f["calls_by_hour"][11] == 2 and sum(f["calls_by_hour"]) == 4


def test_no_calls_today() -> None:
    f = figures([], 0.0)
    assert f["handled"] == 0 and f["average_wait_seconds"] is None
    assert f["rates"] == {"approved": None, "rejected": None, "suspended": None}
