"""The ``/operator`` Socket.IO namespace. See docs/protocol.md."""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie
from typing import Any

import socketio

from ..call_center import CallCenter
from ..clock import Clock
from ..config import Config
from ..errors import Forbidden, MediaError, VideoidError
from ..protocol import (
    Challenge,
    ChatMessage,
    ChecklistAnswer,
    Decide,
    Empty,
    OtpCheck,
    SessionRef,
    SetPresence,
    Snapshot,
    WebrtcCandidate,
    WebrtcOffer,
)
from ..signaling import GuardedNamespace
from ..web_security import LOGIN_COOKIE, CookiePolicy
from .accounts import Accounts
from .call_tools import CallTools

logger = logging.getLogger(__name__)

CALL_ROLES = ("operator", "supervisor")


def login_token(environ: dict[str, Any], auth: Any, cookie_name: str = LOGIN_COOKIE) -> str | None:
    """The login token from the Socket.IO ``auth`` payload, else the login cookie
    (``cookie_name``: ``__Host-videoid_login`` behind HTTPS)."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return str(auth["token"])
    cookie = SimpleCookie()
    try:
        cookie.load(environ.get("HTTP_COOKIE", ""))
    except Exception:  # a malformed cookie header is no login
        return None
    morsel = cookie.get(cookie_name)
    return morsel.value if morsel else None


class OperatorNamespace(GuardedNamespace):
    EVENTS = {
        "set_presence": SetPresence,
        "accept": SessionRef,
        "decline": SessionRef,
        "webrtc_offer": WebrtcOffer,
        "webrtc_candidate": WebrtcCandidate,
        "decide": Decide,
        "challenge": Challenge,
        "snapshot": Snapshot,
        "checklist_answer": ChecklistAnswer,
        "otp_send": Empty,
        "otp_check": OtpCheck,
        "chat": ChatMessage,
        "call_view": Empty,
    }

    def __init__(
        self,
        config: Config,
        accounts: Accounts,
        center: CallCenter,
        tools: CallTools,
        clock: Clock,
    ) -> None:
        super().__init__("/operator", config.signaling)
        self._accounts = accounts
        self._center = center
        self._tools = tools
        self._clock = clock
        self._login_cookie = CookiePolicy.from_config(config.server).login_cookie

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = login_token(environ, auth, self._login_cookie)
        try:
            operator = await self._accounts.authenticate(token, self._clock.now())
            if operator.role not in CALL_ROLES:
                raise Forbidden("the operator console is for operators and supervisors")
            view = await self._center.operator_connected(operator, sid)
        except VideoidError as err:
            raise socketio.exceptions.ConnectionRefusedError(err.message, err.to_dict()) from None
        try:
            await self.save_session(sid, {"operator_id": operator.id, "token": token})
            await self.enter_room(sid, f"operator:{operator.id}")
            await self.enter_room(sid, "operators")
            hello = {**view, "queue": self._center.snapshot(), "reasons": self._tools.reasons()}
            await self.emit("hello", hello, to=sid)
        except BaseException:
            # a refused connection is never told it disconnected: its registration
            # would keep the operator out ("already connected in another tab")
            await self._center.operator_disconnected(operator.id, sid)
            raise
        logger.info("operator %d connected", operator.id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        operator_id = await self._operator_id(sid)
        if operator_id is not None:
            await self._center.operator_disconnected(operator_id, sid)
            logger.info("operator %d disconnected", operator_id)

    async def on_set_presence(self, sid: str, payload: SetPresence) -> dict[str, Any]:
        return await self._center.set_presence(await self._require(sid), payload.status)

    async def on_accept(self, sid: str, payload: SessionRef) -> dict[str, Any]:
        return await self._center.accept(await self._require(sid), payload.session_id)

    async def on_decline(self, sid: str, payload: SessionRef) -> dict[str, Any]:
        return await self._center.decline(await self._require(sid), payload.session_id)

    async def on_webrtc_offer(self, sid: str, payload: WebrtcOffer) -> dict[str, Any]:
        operator_id = await self._require(sid)
        sdp = await self._center.media_offer(
            "operator", self._call(operator_id), operator_id, payload.sdp
        )
        return {"answer": {"type": "answer", "sdp": sdp}}

    async def on_webrtc_candidate(self, sid: str, payload: WebrtcCandidate) -> dict[str, Any]:
        operator_id = await self._require(sid)
        await self._center.media_candidate(
            "operator",
            self._call(operator_id),
            operator_id,
            payload.candidate,
            payload.sdpMid,
            payload.sdpMLineIndex,
        )
        return {}

    async def on_decide(self, sid: str, payload: Decide) -> dict[str, Any]:
        operator_id = await self._require(sid)
        # the login must still be valid, with a recent second-factor proof
        token = await self.session_value(sid, "token")
        now = self._clock.now()
        await self._accounts.authenticate(token if isinstance(token, str) else None, now)
        await self._accounts.require_recent_proof(token if isinstance(token, str) else None, now)
        return await self._center.decide(
            operator_id,
            payload.session_id,
            payload.outcome,
            payload.reason_code,
            payload.reason_text,
        )

    async def on_challenge(self, sid: str, payload: Challenge) -> dict[str, Any]:
        return await self._tools.challenge(
            await self._require(sid), list(payload.kinds), payload.random
        )

    async def on_snapshot(self, sid: str, payload: Snapshot) -> dict[str, Any]:
        return await self._tools.snapshot(await self._require(sid), payload.kind)

    async def on_checklist_answer(self, sid: str, payload: ChecklistAnswer) -> dict[str, Any]:
        return await self._tools.answer(
            await self._require(sid), payload.item, payload.answer, payload.note
        )

    async def on_otp_send(self, sid: str, payload: Empty) -> dict[str, Any]:
        return await self._tools.send_otp(await self._require(sid))

    async def on_otp_check(self, sid: str, payload: OtpCheck) -> dict[str, Any]:
        return await self._tools.check_otp(await self._require(sid), payload.code)

    async def on_chat(self, sid: str, payload: ChatMessage) -> dict[str, Any]:
        return await self._tools.operator_chat(await self._require(sid), payload.text)

    async def on_call_view(self, sid: str, payload: Empty) -> dict[str, Any]:
        operator_id = await self._require(sid)
        return await self._tools.call_view(self._center.call_of(operator_id))

    async def drop_idle(self) -> int:
        """Ends the logins of open consoles unused for ``operators.idle_minutes`` and
        disconnects them (so that nobody absent is offered a customer), and disconnects
        every console, in a call or not, whose login has ended elsewhere (an account
        disabled or its logins revoked from the command line: the call ends with it);
        how many."""
        now = self._clock.now()
        dropped = 0
        consoles = []
        for sid, _ in list(self.server.manager.get_participants(self.namespace, "operators")):
            token = await self.session_value(sid, "token")
            operator_id = await self._operator_id(sid)
            if isinstance(token, str) and operator_id is not None:
                consoles.append((sid, token, operator_id))
        ended = await self._accounts.ended([t for _, t, _ in consoles], now) if consoles else set()
        for sid, token, operator_id in consoles:
            if token in ended:
                await self._end(sid, "revoked")
                dropped += 1
                continue
            if self._center.operator_session(operator_id) is not None:
                self._accounts.in_use(token, now)  # in a call: at work
                continue
            if await self._accounts.expire_if_idle(token, operator_id, now):
                await self._end(sid, "login_expired")
                dropped += 1
        return dropped

    async def _end(self, sid: str, reason: str) -> None:
        """Tells the console its login ended (``login_ended``), then disconnects it."""
        await self.emit("login_ended", {"reason": reason}, to=sid)
        await self.disconnect(sid)

    def _call(self, operator_id: int) -> str:
        session_id = self._center.operator_session(operator_id)
        if session_id is None:
            raise MediaError("you are not in a call", code="no_call")
        return session_id

    async def _operator_id(self, sid: str) -> int | None:
        value = await self.session_value(sid, "operator_id")
        return value if isinstance(value, int) else None

    async def _require(self, sid: str) -> int:
        operator_id = await self._operator_id(sid)
        if operator_id is None:
            raise VideoidError("log in first", code="unauthorized")
        token = await self.session_value(sid, "token")
        # working in the console is using the login; a login ended elsewhere (the
        # command line) drops the connection at the next write of its use
        if isinstance(token, str) and not await self._accounts.note_use(
            token, operator_id, self._clock.now()
        ):
            await self._end(sid, "login_expired")
            raise VideoidError("your login has ended; log in again", code="login_expired")
        return operator_id

    async def drop_operator(self, operator_id: int) -> None:
        """Disconnects every connection of this account (its logins were ended)."""
        room = f"operator:{operator_id}"
        sids = [sid for sid, _ in self.server.manager.get_participants(self.namespace, room)]
        for sid in sids:
            await self._end(sid, "revoked")
        if sids:
            logger.info("operator %d: %d connections dropped", operator_id, len(sids))
