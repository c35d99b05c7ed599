"""The common guard of every Socket.IO namespace: rate limits, payload validation and
error translation (R21). Handlers receive a validated payload and return a dict; the
client's acknowledgement is ``{"ok": true, ...}`` or ``{"ok": false, "error": {"code",
"message"}}``, and a failure is also emitted as an ``error`` event for clients that do
not ask for acknowledgements."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import pydantic
import socketio

from .config import SignalingConfig
from .errors import RateLimited, ValidationError, VideoidError, for_client
from .protocol import Payload

logger = logging.getLogger(__name__)


class TokenBucket:
    """``rate`` events per second sustained, ``burst`` at once. Pure: pass ``now``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = now
        self.refused = 0

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False


def error_reply(err: VideoidError) -> dict[str, Any]:
    return {"ok": False, "error": err.to_dict()}


class GuardedNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Subclasses list their events in ``EVENTS`` (name → payload model) and implement
    ``async def on_<name>(self, sid, payload) -> dict``."""

    EVENTS: ClassVar[dict[str, type[Payload]]] = {}
    DISCONNECT_AFTER_REFUSALS = 200
    """A client that keeps flooding after this many refusals is disconnected."""

    def __init__(self, namespace: str, config: SignalingConfig) -> None:
        super().__init__(namespace)
        self._signaling = config
        self._buckets: dict[str, TokenBucket] = {}

    async def session_value(self, sid: str, key: str) -> Any:
        """A value saved in the connection's Socket.IO session at connect, or None."""
        try:
            session = await self.get_session(sid)
        except KeyError:
            return None
        return session.get(key)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            if event == "disconnect":
                self._buckets.pop(args[0], None)
            return await super().trigger_event(event, *args)
        sid = args[0]
        try:
            return {"ok": True, **(await self._dispatch(event, sid, args[1:]))}
        except Exception as err:  # storage text and untranslated errors stay here
            reply = error_reply(for_client(err, f"{self.namespace}: {str(event)[:64]}"))
        await self.emit("error", {"event": str(event)[:64], **reply["error"]}, to=sid)
        return reply

    async def _dispatch(self, event: str, sid: str, args: tuple[Any, ...]) -> dict[str, Any]:
        bucket = self._buckets.get(sid)
        now = time.monotonic()
        if bucket is None:
            bucket = self._buckets[sid] = TokenBucket(
                self._signaling.events_per_second, self._signaling.event_burst, now
            )
        if not bucket.take(now):
            if bucket.refused > self.DISCONNECT_AFTER_REFUSALS:
                logger.warning("%s: disconnecting a flooding client", self.namespace)
                await self.disconnect(sid)
            raise RateLimited("too many messages; slow down")
        model = self.EVENTS.get(event) if isinstance(event, str) else None
        if model is None:
            raise ValidationError(f"unknown event {str(event)[:64]!r}", code="unknown_event")
        if len(args) > 1:
            raise ValidationError("one payload per event", code="invalid_payload")
        raw = args[0] if args else {}
        try:
            payload = model.model_validate(raw if raw is not None else {})
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise ValidationError(f"{where}: {first['msg']}", code="invalid_payload") from None
        result: dict[str, Any] = await getattr(self, f"on_{event}")(sid, payload)
        return result or {}
