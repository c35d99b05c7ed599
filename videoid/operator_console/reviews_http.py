"""The supervisor's review of suspended sessions (four-eyes, R15) and dashboard, over HTTP.

A supervisor sees the suspended sessions, opens one and sees everything the operator
saw (the onboarding images and checks, the call's snapshots, signals, challenges,
checklist, chat and OTP events, the notes), and approves or rejects it with a reason.
A supervisor cannot review a session they handled as operator.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..db import OperatorRecord
from ..errors import SessionNotFound, ValidationError
from ..session import State
from ..web.requests import login_token, require_staff, services_of
from .dashboard import figures, today_start


class ReviewsApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/api/reviews", self.list),
            web.get("/api/reviews/{session_id}", self.show),
            web.post("/api/reviews/{session_id}/decision", self.decide),
            web.get("/api/dashboard", self.dashboard),
        ]

    async def _supervisor(self, request: web.Request) -> OperatorRecord:
        # the console's own refreshes (the dashboard's every 5 s) are not a use of the
        # login: an unattended console still ends after operators.idle_minutes
        background = request.headers.get("X-Background-Request") == "1"
        return await require_staff(
            request, "supervisor", refused="reviews are for supervisors", use=not background
        )

    async def list(self, request: web.Request) -> web.Response:
        supervisor = await self._supervisor(request)
        repo = services_of(request).repo
        out: list[dict[str, Any]] = []
        for record in await repo.sessions_in([State.SUSPENDED.value]):
            decisions = await repo.decisions(record.id)
            last = decisions[-1] if decisions else None
            operator = await repo.find_operator(id=last.operator_id) if last else None
            out.append(
                {
                    "session_id": record.id,
                    "suspended_at": last.at if last else record.updated_at,
                    "operator": operator.username if operator else None,
                    "reason_code": last.reason_code if last else None,
                    "reason_text": last.reason_text if last else "",
                    "own": bool(last and last.operator_id == supervisor.id),
                }
            )
        out.sort(key=lambda r: r["suspended_at"])
        return web.json_response({"reviews": out})

    async def show(self, request: web.Request) -> web.Response:
        supervisor = await self._supervisor(request)
        services = services_of(request)
        session_id = request.match_info["session_id"]
        record = await services.repo.find_session(id=session_id) if len(session_id) == 36 else None
        if record is None:
            raise SessionNotFound()
        await services.repo.append_audit(
            services.clock.now(),
            "evidence_viewed",
            f"operator:{supervisor.id}",
            session_id,
            {"what": "review"},
        )
        return web.json_response(
            {
                "session_id": session_id,
                "state": record.state,
                "decisions": await services.repo.named_decisions(session_id),
                "onboarding": await services.onboarding.operator_view(session_id),
                "call": await services.tools.call_view(session_id),
                "reasons": services.tools.reasons(),
            }
        )

    async def dashboard(self, request: web.Request) -> web.Response:
        await self._supervisor(request)
        services = services_of(request)
        since = today_start(services.clock.now())
        rows = await services.repo.transitions_of_sessions_since(since)
        suspended = await services.repo.sessions_in([State.SUSPENDED.value])
        return web.json_response(
            {
                "now": {**services.center.live_view(), "reviews": len(suspended)},
                "today": figures(rows, since),
            }
        )

    async def decide(self, request: web.Request) -> web.Response:
        supervisor = await self._supervisor(request)
        services = services_of(request)
        # a decision needs a recent second-factor proof (reauthentication_required)
        await services.accounts.require_recent_proof(login_token(request), services.clock.now())
        try:
            body = await request.json()
        except ValueError as err:
            raise ValidationError("the body must be JSON", code="invalid_json") from err
        if not isinstance(body, dict):
            raise ValidationError("the body must be a JSON object", code="invalid_json")
        outcome, reason = body.get("outcome"), body.get("reason_code")
        text = body.get("reason_text", "")
        if outcome not in ("approved", "rejected"):
            raise ValidationError("outcome is approved or rejected", code="invalid_outcome")
        if not isinstance(text, str) or not isinstance(reason, str):
            raise ValidationError("reason_code and reason_text are strings", code="invalid_payload")
        services.tools.gate.check_reason(outcome, reason)
        result = await services.center.review(
            supervisor.id, request.match_info["session_id"], outcome, reason, text
        )
        return web.json_response(result)
