"""HTTP endpoints of the onboarding steps (customer) and of what they produced
(operator). Customers authenticate with their invitation token as a Bearer token;
photos are sent as the raw request body (JPEG or PNG), so that the page can show
upload progress. See docs/protocol.md."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import qrcode
from aiohttp import web
from qrcode.image.svg import SvgPathImage

from ..db import SessionRecord
from ..session import PRE_CALL_STEPS, State
from ..staff_reads import readable_session
from ..web.requests import (
    read_json,
    require_customer,
    services_of,
)
from .invitations import Invitation
from .upload_spool import SpooledUpload, too_large

BEFORE_QUEUE = (State.CREATED, *PRE_CALL_STEPS)


def qr_data_url(text: str) -> str:
    """``text`` as a QR code, an SVG data URL (the page shows it as an image)."""
    image = qrcode.make(text, image_factory=SvgPathImage, box_size=10, border=2)
    svg: bytes = image.to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


@contextlib.asynccontextmanager
async def _upload(request: web.Request) -> AsyncIterator[SpooledUpload]:
    """A photo's body spooled to a size-capped temporary file as it arrives (never
    whole in memory); refused at once when its announced length is too large."""
    services = services_of(request)
    limit = services.config.onboarding.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    upload = await SpooledUpload.receive(
        request.content, limit, services.config.data_path / "uploads"
    )
    try:
        yield upload
    finally:
        upload.close()


def _address(request: web.Request) -> str:
    return request.remote or ""


async def _step_body(request: web.Request, record: SessionRecord, step: State) -> Any:
    """The JSON body of a pre-call step, read once the session's state allows the step:
    a step out of turn is 409 ``step_not_allowed`` whatever its body."""
    await services_of(request).onboarding.require_step(record, step)
    return await read_json(request)


class OnboardingApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/api/onboarding", self.overview),
            web.get("/api/onboarding/consent", self.consent_texts),
            web.post("/api/onboarding/consent", self.consent),
            web.post("/api/onboarding/document/{side}", self.document),
            web.post("/api/onboarding/document-done", self.document_done),
            web.post("/api/onboarding/data", self.data),
            web.post("/api/onboarding/selfie", self.selfie),
            web.post("/api/onboarding/connectivity", self.connectivity),
            web.post("/api/onboarding/av-test", self.av_test),
            web.post("/api/onboarding/handover", self.handover),
            web.post("/api/onboarding/handover/claim", self.claim_handover),
            web.get("/api/sessions/{session_id}/onboarding", self.operator_view),
            web.get("/api/sessions/{session_id}/images/{name}", self.operator_image),
            web.get("/api/sessions/{session_id}/call", self.call_view),
            web.get("/api/sessions/{session_id}/snapshots/{object_id}", self.snapshot_image),
        ]

    async def overview(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).onboarding.overview(record))

    async def consent_texts(self, request: web.Request) -> web.Response:
        await require_customer(request)
        language = request.query.get("lang", "en")
        return web.json_response(
            {"documents": services_of(request).onboarding.consent_documents(language)}
        )

    async def consent(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        body = await _step_body(request, record, State.CONSENTED)
        return web.json_response(
            await services_of(request).onboarding.consent(record, body, _address(request))
        )

    async def document(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        services = services_of(request)
        # the body is spooled only once the step and the session's one upload in
        # flight allow it (a refused request is not read)
        result = await services.onboarding.upload_document(
            record,
            request.match_info["side"],
            request.query.get("country", ""),
            request.query.get("type", ""),
            lambda: _upload(request),
        )
        return web.json_response(result)

    async def document_done(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).onboarding.finish_document(record))

    async def data(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        body = await _step_body(request, record, State.DATA_CONFIRMED)
        result = await services_of(request).onboarding.confirm_data(record, body)
        # 202: codes were sent to contacts to prove first; nothing is saved yet
        return web.json_response(result, status=202 if result.get("ok") is False else 200)

    async def selfie(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        services = services_of(request)
        result = await services.onboarding.upload_selfie(record, lambda: _upload(request))
        return web.json_response(result)

    async def av_test(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        body = await _step_body(request, record, State.AV_TESTED)
        return web.json_response(await services_of(request).onboarding.av_test(record, body))

    async def connectivity(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        body = await _step_body(request, record, State.AV_TESTED)
        return web.json_response(
            await services_of(request).onboarding.connectivity_offer(record, body)
        )

    async def handover(self, request: web.Request) -> web.Response:
        """A QR code that continues this session on a phone."""
        record = await require_customer(request)
        services = services_of(request)

        async def create() -> Invitation:
            return await services.invitations.handover(
                record,
                services.clock.now(),
                services.base_url,
                services.config.onboarding.handover_minutes,
            )

        # only before the queue: the same state check as every onboarding step
        link: Invitation = await services.center.step(record.id, BEFORE_QUEUE, create)
        return web.json_response(
            {"url": link.url, "expires_at": link.expires_at, "qr": qr_data_url(link.url)}
        )

    async def claim_handover(self, request: web.Request) -> web.Response:
        services = services_of(request)
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        device = await services.invitations.claim_handover(token, services.clock.now())
        return web.json_response({"token": device})

    async def _session_for_operator(self, request: web.Request) -> str:
        # an operator only while the session is offered or assigned to them, and for a
        # short grace after the decision; every look is on record (R14.7)
        what = request.path.split(request.match_info["session_id"], 1)[-1].lstrip("/")
        record = await readable_session(request, what)
        return record.id

    async def call_view(self, request: web.Request) -> web.Response:
        """What happened in the call: checklist, snapshots, chat, OTP events, analysis."""
        session_id = await self._session_for_operator(request)
        return web.json_response(await services_of(request).tools.call_view(session_id))

    async def snapshot_image(self, request: web.Request) -> web.Response:
        session_id = await self._session_for_operator(request)
        data = await services_of(request).tools.snapshot_image(
            session_id, request.match_info["object_id"]
        )
        return web.Response(
            body=data,
            content_type="image/jpeg",
            headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
        )

    async def operator_view(self, request: web.Request) -> web.Response:
        session_id = await self._session_for_operator(request)
        return web.json_response(await services_of(request).onboarding.operator_view(session_id))

    async def operator_image(self, request: web.Request) -> web.Response:
        session_id = await self._session_for_operator(request)
        content_type, data = await services_of(request).onboarding.image(
            session_id, request.match_info["name"]
        )
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
        )
