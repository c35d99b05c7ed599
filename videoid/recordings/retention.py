"""Retention (R14): at the end of a session's retention period its personal data is
destroyed — the keys of its images, snapshots and recordings (crypto-shredding: the
files become noise, copies included), then the records that name the person — unless a
legal hold suspends it. The audit chain stays valid (it only ever held commitments) and
records each purge.

A session's retention runs from its last change, once it is in an ended state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..db import Repository
from ..errors import ValidationError
from ..storage import ObjectStore
from .evidence import MANIFEST_KIND, Evidence

logger = logging.getLogger(__name__)

YEAR = 365.25 * 24 * 3600
ENDED = ("approved", "rejected", "completed", "abandoned", "expired")
"""States whose retention runs (a suspended case is still open)."""


class OnHold(ValidationError):
    code = "legal_hold"
    status = 409


@dataclass(frozen=True)
class PurgeReport:
    session_id: str
    objects: int
    recordings: int
    details: dict[str, int]


class Retention:
    def __init__(
        self,
        repo: Repository,
        objects: ObjectStore,
        recordings_dir: Path,
        years: float,
        evidence: Evidence | None = None,
    ) -> None:
        self._repo, self._objects = repo, objects
        self._recordings_dir, self.years = recordings_dir, years
        self._evidence = evidence
        """Seals the session again after a hold, a release or a purge."""

    async def _sealed(self, session_id: str, now: float, event: str) -> None:
        if self._evidence is not None:
            await self._evidence.reseal(session_id, now, event)

    async def due(self, now: float) -> list[str]:
        """Sessions whose retention has ended and that no hold keeps."""
        ended = await self._repo.sessions_ended_before(ENDED, now - self.years * YEAR)
        holds = await self._repo.holds()
        return [s for s in ended if s not in holds]

    async def purge(self, session_id: str, now: float) -> PurgeReport:
        """Destroy one session's personal data. Refused under a legal hold."""
        if session_id in await self._repo.holds():
            raise OnHold("this session is under a legal hold")
        shredded = 0
        for obj in await self._repo.objects_of(session_id):
            # the seals name items and hashes, no personal data: they stay, so that
            # the history of the evidence can still be shown after the purge
            if obj.wrapped_key is not None and obj.kind != MANIFEST_KIND:
                await self._objects.shred(obj.id, now)
                shredded += 1
        recordings = await self._repo.recordings(session_id)
        details = await self._repo.purge_session_data(session_id, now)  # keys gone first
        for rec in recordings:
            path = self._recordings_dir / rec["file"]
            await asyncio.to_thread(path.unlink, True)
        await self._sealed(session_id, now, "purged")
        logger.info(
            "session %s: purged at the end of retention (%d objects, %d recordings)",
            session_id,
            shredded,
            len(recordings),
        )
        return PurgeReport(session_id, shredded, len(recordings), details)

    async def purge_due(self, now: float) -> list[PurgeReport]:
        reports = []
        for session_id in await self.due(now):
            reports.append(await self.purge(session_id, now))
        return reports

    async def hold(self, session_id: str, reason: str, by: str, now: float) -> None:
        if not reason.strip():
            raise ValidationError("a legal hold needs a reason", code="reason_required")
        if await self._repo.find_session(id=session_id) is None:
            raise ValidationError("no such session", code="session_not_found")
        await self._repo.place_hold(session_id, reason.strip()[:2000], by, now)
        await self._repo.append_audit(now, "legal_hold", by, session_id, {"reason": reason})
        await self._sealed(session_id, now, "legal_hold")

    async def release(self, session_id: str, by: str, now: float) -> bool:
        released = await self._repo.release_hold(session_id)
        if released:
            await self._repo.append_audit(now, "legal_hold_released", by, session_id, {})
            await self._sealed(session_id, now, "hold_released")
        return released

    def describe(self) -> dict[str, Any]:
        return {"years": self.years, "states": list(ENDED)}
