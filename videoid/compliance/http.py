"""The compliance officer's console over HTTP (R13, R14, R22).

Only the ``compliance`` role reaches it. Every search, view, image, playback,
verification and export is written to the audit log, with the officer as actor.
The endpoints are listed in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ..db import OperatorRecord
from ..db.session_search import SessionFilter
from ..errors import (
    ObjectNotFound,
    SessionNotFound,
    StorageError,
    ValidationError,
)
from ..recordings.evidence import EXTENSIONS, MANIFEST_KIND, EvidenceError
from ..services import Services
from ..web.requests import require_staff, services_of
from .playback import SIDES, ranged
from .search import Query, search, summary

logger = logging.getLogger(__name__)

_ID = re.compile(r"[0-9a-f]{32}")
_SESSION = re.compile(r"[0-9a-f-]{36}")
FILTERS = ("from", "to", "outcome", "operator", "name", "document", "flag")
_TIMELINE_ITEMS = ("snapshot", "chat", "otp", "checklist", "gap", "challenge_requested", "camera")


class ComplianceApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/api/compliance/sessions", self.search),
            web.get("/api/compliance/sessions/{session_id}", self.show),
            web.get("/api/compliance/sessions/{session_id}/objects/{object_id}", self.image),
            web.post("/api/compliance/sessions/{session_id}/verify", self.verify),
            web.get("/api/compliance/sessions/{session_id}/export", self.export),
            web.post("/api/compliance/recordings/{recording_id}/play", self.play),
            web.get("/api/compliance/recordings/{recording_id}/{side}.webm", self.media),
        ]

    async def _officer(self, request: web.Request) -> OperatorRecord:
        return await require_staff(
            request, "compliance", refused="the compliance console is for compliance officers"
        )

    async def _audit(
        self, services: Services, officer: OperatorRecord, action: str, subject: str, **details: Any
    ) -> None:
        await services.repo.append_audit(
            services.clock.now(), action, f"operator:{officer.id}", subject, details
        )

    async def _session(self, request: web.Request) -> str:
        session_id = request.match_info["session_id"]
        if not _SESSION.fullmatch(session_id):
            raise SessionNotFound()
        if await services_of(request).repo.find_session(id=session_id) is None:
            raise SessionNotFound()
        return session_id

    async def search(self, request: web.Request) -> web.Response:
        officer = await self._officer(request)
        services = services_of(request)
        query = Query.from_params(request.query)
        found = await search(services.repo, query)
        # what was looked for, not the name or number itself (the log is not for them)
        used = sorted(k for k in FILTERS if request.query.get(k))
        await self._audit(
            services,
            officer,
            "evidence_searched",
            "",
            filters=used,
            results=len(found["sessions"]),
            total=found["total"],
        )
        return web.json_response(found)

    async def show(self, request: web.Request) -> web.Response:
        officer = await self._officer(request)
        services = services_of(request)
        session_id = await self._session(request)
        repo = services.repo
        [row] = await repo.search_sessions(SessionFilter(session_ids=(session_id,)))
        objects = await repo.objects_of(session_id)
        recordings = await repo.recordings(session_id)
        seals = await services.evidence.seals(session_id)
        await self._audit(services, officer, "evidence_viewed", session_id, what="compliance")
        person = row["results"].get("personal_data", {}).get("fields") or {}
        return web.json_response(
            {
                **summary(row),
                "customer_data": person,
                "onboarding": {
                    k: v for k, v in row["results"].items() if k in ("document", "selfie")
                },
                "timeline": await _timeline(services, session_id, recordings),
                "objects": [
                    {
                        "id": o.id,
                        "kind": o.kind,
                        "content_type": o.content_type,
                        "size": o.size,
                        "sha256": o.sha256,
                        "at": o.created_at,
                        "destroyed": o.wrapped_key is None,
                    }
                    for o in objects
                    if o.kind != MANIFEST_KIND
                ],
                "recordings": [
                    {
                        "id": r["id"],
                        "status": r["status"],
                        "started_at": r["started_at"],
                        "ended_at": r["ended_at"],
                        "summary": r["summary"],
                        "destroyed": r["wrapped_key"] is None,
                    }
                    for r in recordings
                ],
                "seal": None
                if not seals
                else {
                    "sealed_at": seals[-1].body["sealed_at"],
                    "key_id": seals[-1].body["key_id"],
                    "fingerprint": services.evidence.key.fingerprint,
                    "items": len(seals[-1].body["items"]),
                    "seals": len(seals),
                    "event": seals[-1].body.get("event", "sealed"),
                    "timestamped": seals[-1].timestamp is not None,
                },
                "audit": await repo.audit_of(session_id),
            }
        )

    async def image(self, request: web.Request) -> web.Response:
        officer = await self._officer(request)
        services = services_of(request)
        session_id = await self._session(request)
        object_id = request.match_info["object_id"]
        record = await services.repo.find_object(object_id) if _ID.fullmatch(object_id) else None
        if (
            record is None
            or record.session_id != session_id
            or record.content_type not in EXTENSIONS
            or record.kind == MANIFEST_KIND
        ):
            raise ObjectNotFound("no such image in this session")
        _, data = await services.objects.get(object_id)
        await self._audit(
            services, officer, "evidence_viewed", session_id, what=f"object:{record.kind}"
        )
        return web.Response(
            body=data,
            content_type=record.content_type,
            headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
        )

    async def verify(self, request: web.Request) -> web.Response:
        officer = await self._officer(request)
        services = services_of(request)
        session_id = await self._session(request)
        verdict = await services.evidence.verify(session_id)
        await self._audit(
            services,
            officer,
            "evidence_verified",
            session_id,
            ok=verdict["ok"],
            problems=len(verdict["problems"]),
        )
        return web.json_response(verdict)

    async def export(self, request: web.Request) -> web.StreamResponse:
        officer = await self._officer(request)
        services = services_of(request)
        session_id = await self._session(request)
        with tempfile.TemporaryDirectory(prefix="videoid-export-") as tmp:
            path = Path(tmp) / f"evidence-{session_id}.zip"
            await services.evidence.export(
                session_id, path, f"operator:{officer.id}", services.clock.now()
            )
            data = await asyncio.to_thread(path.read_bytes)
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="evidence-{session_id}.zip"',
                "Cache-Control": "no-store",
            },
        )

    async def play(self, request: web.Request) -> web.Response:
        """A signed link to one side of a recording; the playback is audited here."""
        officer = await self._officer(request)
        services = services_of(request)
        recording = await _recording(services, request.match_info["recording_id"])
        try:
            body = await request.json()
        except ValueError as err:
            raise ValidationError("the body must be JSON", code="invalid_json") from err
        side = body.get("side") if isinstance(body, dict) else None
        if side not in SIDES:
            raise ValidationError("side: customer or operator", code="invalid_payload")
        if recording["wrapped_key"] is None:
            raise EvidenceError(
                "this recording was destroyed at the end of its retention",
                code="recording_destroyed",
            )
        actor = f"operator:{officer.id}"
        url, expires = services.links.sign(recording["id"], side, actor, services.clock.now())
        await self._audit(
            services,
            officer,
            "recording_played",
            recording["session_id"],
            recording=recording["id"],
            side=side,
        )
        return web.json_response({"url": url, "expires_at": expires})

    async def media(self, request: web.Request) -> web.Response:
        """The signed link: the browser's ``<video>`` fetches ranges of it."""
        services = services_of(request)
        recording_id, side = request.match_info["recording_id"], request.match_info["side"]
        if side not in SIDES or not _ID.fullmatch(recording_id):
            raise SessionNotFound("no such recording")
        query = request.query
        services.links.check(
            recording_id,
            side,
            query.get("by", ""),
            query.get("expires", ""),
            query.get("sig", ""),
            services.clock.now(),
        )
        recording = await _recording(services, recording_id)
        try:
            data = await services.playback.media(recording, side)
        except StorageError as err:
            logger.warning("recording %s cannot be played: %s", recording_id, err.message)
            raise
        return ranged(request, data, "video/webm")


async def _recording(services: Services, recording_id: str) -> dict[str, Any]:
    found = (
        await services.repo.find_recording(recording_id) if _ID.fullmatch(recording_id) else None
    )
    if found is None:
        raise ObjectNotFound("no such recording", code="recording_not_found")
    return found


async def _timeline(
    services: Services, session_id: str, recordings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Everything that happened in the session, in time order."""
    repo = services.repo
    events: list[dict[str, Any]] = []
    for previous, state, at, actor in await repo.transitions(session_id):
        events.append(
            {"at": at, "kind": "transition", "actor": actor, "text": f"{previous} → {state}"}
        )
    for a in await repo.assignments(session_id):
        events.append(
            {
                "at": a.at,
                "kind": "assignment",
                "actor": "system",
                "text": f"operator {a.operator_id} drawn ({a.index + 1} of {len(a.candidates)})",
            }
        )
    for d in await repo.named_decisions(session_id):
        text = f"{d['outcome']}: {d['reason_code']}"
        events.append(
            {
                "at": d["at"],
                "kind": "decision",
                "actor": d["operator"],
                "text": f"{text} — {d['reason_text']}" if d["reason_text"] else text,
            }
        )
    for c in await repo.consents(session_id):
        events.append(
            {
                "at": c["at"],
                "kind": "consent",
                "actor": "customer",
                "text": f"{c['document']} {c['version']} ({c['language']})",
            }
        )
    for item in await repo.items(session_id, _TIMELINE_ITEMS):
        events.append(
            {
                "at": item["at"],
                "kind": item["kind"],
                "actor": item["actor"],
                "text": _item_text(item["kind"], item["data"]),
            }
        )
    for r in recordings:
        events.append(
            {"at": r["started_at"], "kind": "recording", "actor": "system", "text": "started"}
        )
        if r["ended_at"] is not None:
            events.append(
                {"at": r["ended_at"], "kind": "recording", "actor": "system", "text": r["status"]}
            )
    events.sort(key=lambda e: e["at"])
    return events


def _item_text(kind: str, data: dict[str, Any]) -> str:
    if kind == "chat":
        return str(data.get("text", ""))
    if kind == "otp":
        return str(data.get("event", ""))  # events only: the code is never stored
    if kind == "snapshot":
        return str(data.get("kind") or data.get("label") or "snapshot")
    if kind == "gap":
        return f"{data.get('seconds', '?')} s without the customer"
    if kind == "checklist":
        items = data.get("items", [])
        answered = sum(1 for i in items if i.get("answer") is not None)
        return f"{answered} of {len(items)} checks answered"
    return ", ".join(f"{k}: {v}" for k, v in data.items() if isinstance(v, str | int | float))
