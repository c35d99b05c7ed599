"""The supervisor's dashboard: the queue and the operators now (from the call center),
and today's figures, computed from the sessions' recorded transitions (pure).

Wait: from entering the queue (the last time before the call) to the call's start.
Handle time: from the call's start to its decision. A session counts as handled on the
day of the operator's decision; a supervisor's review is counted apart.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

Row = tuple[str, str, str, float, str]
"""(session_id, previous state, state, at, actor)"""

OUTCOMES = ("approved", "rejected", "suspended")


def today_start(now: float) -> float:
    """Local midnight of ``now``'s day, in epoch seconds."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def figures(rows: Iterable[Row], since: float) -> dict[str, Any]:
    """Today's figures from the transitions of the sessions that moved since ``since``
    (rows in time order)."""
    queued: dict[str, float] = {}
    started: dict[str, float] = {}
    waits: list[float] = []
    handles: list[float] = []
    outcomes: Counter[str] = Counter()
    reviews: Counter[str] = Counter()
    hours: Counter[int] = Counter()
    for session_id, previous, state, at, _actor in rows:
        if state == "waiting":
            queued[session_id] = at
        elif state == "in_call":
            started[session_id] = at
            if at >= since:
                hours[time.localtime(at).tm_hour] += 1
                if session_id in queued:
                    waits.append(at - queued[session_id])
        elif previous == "in_call" and state in OUTCOMES and at >= since:
            outcomes[state] += 1
            if session_id in started:
                handles.append(at - started[session_id])
        elif previous == "suspended" and at >= since:
            reviews[state] += 1
    handled = sum(outcomes.values())
    return {
        "handled": handled,
        "outcomes": {o: outcomes[o] for o in OUTCOMES},
        "rates": {o: round(outcomes[o] / handled, 3) if handled else None for o in OUTCOMES},
        "reviews": {o: reviews[o] for o in ("approved", "rejected")},
        "average_wait_seconds": round(statistics.fmean(waits), 1) if waits else None,
        "average_handle_seconds": round(statistics.fmean(handles), 1) if handles else None,
        "calls_by_hour": [hours[h] for h in range(24)],
    }
