"""The ``/customer`` Socket.IO namespace. See docs/protocol.md."""

from __future__ import annotations

import logging
from typing import Any

import socketio

from ..call_center import CallCenter
from ..clock import Clock
from ..config import Config
from ..errors import VideoidError
from ..operator_console.call_tools import CallTools
from ..protocol import CameraInfo, ChatMessage, Empty, WebrtcCandidate, WebrtcOffer
from ..signaling import GuardedNamespace
from .invitations import Invitations

logger = logging.getLogger(__name__)


class CustomerNamespace(GuardedNamespace):
    EVENTS = {
        "join_queue": Empty,
        "leave_queue": Empty,
        "webrtc_offer": WebrtcOffer,
        "webrtc_candidate": WebrtcCandidate,
        "chat": ChatMessage,
        "camera": CameraInfo,
    }

    def __init__(
        self,
        config: Config,
        invitations: Invitations,
        center: CallCenter,
        tools: CallTools,
        clock: Clock,
    ) -> None:
        super().__init__("/customer", config.signaling)
        self._invitations = invitations
        self._center = center
        self._tools = tools
        self._clock = clock

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            record = await self._invitations.resolve(token, self._clock.now())
            view, replaced = await self._center.customer_connected(record, sid)
        except VideoidError as err:
            raise socketio.exceptions.ConnectionRefusedError(err.message, err.to_dict()) from None
        await self.save_session(sid, {"session_id": record.id})
        await self.enter_room(sid, f"session:{record.id}")
        if replaced is not None:  # a connection that died without saying so
            await self.disconnect(replaced)
        await self.emit("session", view, to=sid)
        logger.info("session %s: customer connected", record.id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        session_id = await self._session_id(sid)
        if session_id is not None:
            await self._center.customer_disconnected(session_id, sid)
            logger.info("session %s: customer disconnected", session_id)

    async def on_join_queue(self, sid: str, payload: Empty) -> dict[str, Any]:
        return await self._center.join_queue(await self._require(sid))

    async def on_leave_queue(self, sid: str, payload: Empty) -> dict[str, Any]:
        return await self._center.leave_queue(await self._require(sid))

    async def on_webrtc_offer(self, sid: str, payload: WebrtcOffer) -> dict[str, Any]:
        sdp = await self._center.media_offer(
            "customer", await self._require(sid), None, payload.sdp
        )
        return {"answer": {"type": "answer", "sdp": sdp}}

    async def on_webrtc_candidate(self, sid: str, payload: WebrtcCandidate) -> dict[str, Any]:
        await self._center.media_candidate(
            "customer",
            await self._require(sid),
            None,
            payload.candidate,
            payload.sdpMid,
            payload.sdpMLineIndex,
        )
        return {}

    async def on_chat(self, sid: str, payload: ChatMessage) -> dict[str, Any]:
        return await self._tools.chat(await self._require(sid), "customer", payload.text)

    async def on_camera(self, sid: str, payload: CameraInfo) -> dict[str, Any]:
        """The customer's camera as the browser names it (an injection signal, R7)."""
        session_id = await self._require(sid)
        if not self._center.customer_in_call(session_id):
            raise VideoidError("there is no call", code="no_call")
        await self._tools.camera_label(session_id, payload.label)
        return {}

    async def _session_id(self, sid: str) -> str | None:
        value = await self.session_value(sid, "session_id")
        return value if isinstance(value, str) else None

    async def _require(self, sid: str) -> str:
        session_id = await self._session_id(sid)
        if session_id is None:
            raise VideoidError("connect with your invitation first", code="unauthorized")
        return session_id
