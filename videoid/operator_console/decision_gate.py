"""What a decision needs before the call center takes it: a reason from the provider's
list for its outcome, and, to approve, the session's checklist done.

:class:`Checklists` keeps each session's checklist: drawn once at random from the
template for the customer's document, written, then read back. Every answer goes
through it (one at a time), so the copy it keeps in memory is the one in the database;
it keeps the latest :data:`KEPT` it used.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from typing import Any

from ..clock import Clock
from ..config import CallConfig
from ..db import Repository
from ..errors import ValidationError
from .checklist import Checklist, ChecklistTemplate

KEPT = 256
"""Checklists kept in memory (calls under way and those just ended): more than the
calls one process holds; the others are read back from the database."""


class Checklists:
    def __init__(
        self,
        repo: Repository,
        clock: Clock,
        template: ChecklistTemplate,
        rng: random.Random | None = None,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._template = template
        self._rng = rng or random.SystemRandom()
        self._kept: OrderedDict[str, Checklist] = OrderedDict()
        self._lock = asyncio.Lock()

    async def of(self, session_id: str) -> Checklist:
        """The session's checklist: drawn (at random) and written the first time."""
        async with self._lock:
            return await self._of(session_id)

    async def answer(
        self,
        session_id: str,
        item_id: str,
        answer: str,
        note: str,
        by: str,
        snapshots: dict[str, str] | None,
    ) -> dict[str, Any]:
        """Record an answer, written first and then kept (one at a time: each view
        written holds every answer written before it); returns the checklist's view.
        An answer the storage refuses is not kept. ``snapshots``: see
        :meth:`Checklist.with_answer`."""
        async with self._lock:
            checklist = await self._of(session_id)
            now = self._clock.now()
            answered = checklist.with_answer(item_id, answer, note, now, by, snapshots)
            view = answered.to_json()
            await self._repo.add_item(session_id, "checklist", by, view, now)
            checklist.answers = answered.answers
            return view

    async def _of(self, session_id: str) -> Checklist:
        checklist = self._kept.get(session_id)
        if checklist is None:
            saved = await self._repo.items(session_id, ["checklist"])
            if saved:
                checklist = Checklist.from_json(saved[-1]["data"])
            else:
                results = await self._repo.results(session_id)
                doc_type = (results.get("document") or {}).get("type") or "id_card"
                checklist = self._template.draw(doc_type, self._rng)
                await self._repo.add_item(
                    session_id, "checklist", "system", checklist.to_json(), self._clock.now()
                )
            self._kept[session_id] = checklist
        self._kept.move_to_end(session_id)
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        return checklist

    def __len__(self) -> int:
        return len(self._kept)


class DecisionGate:
    """What the call center checks before a decision (its
    :class:`~videoid.call_center.DecisionCheck`)."""

    def __init__(self, config: CallConfig, checklists: Checklists) -> None:
        self._config = config
        self._checklists = checklists

    def reasons(self) -> dict[str, list[str]]:
        """The provider's reasons, by outcome."""
        c = self._config
        return {
            "approved": list(c.approve_reasons),
            "rejected": list(c.reject_reasons),
            "suspended": list(c.suspend_reasons),
        }

    def check_reason(self, outcome: str, reason_code: str) -> None:
        """Raises ValidationError (``invalid_reason``) for a reason not on the outcome's
        list."""
        if reason_code not in self.reasons().get(outcome, []):
            raise ValidationError(
                f"{reason_code!r} is not a reason for {outcome}", code="invalid_reason"
            )

    async def check(self, session_id: str, outcome: str, reason_code: str) -> None:
        """Raises to refuse the decision: ``invalid_reason``, ``checklist_incomplete``."""
        self.check_reason(outcome, reason_code)
        (await self._checklists.of(session_id)).check_decision(outcome)
