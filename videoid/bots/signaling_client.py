"""A Socket.IO client that speaks videoid's protocol: acknowledged requests that raise
on ``{"ok": false}``, and server events delivered to an asyncio queue per name."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Container, Coroutine
from typing import Any

import socketio

from ..errors import VideoidError


class ProtocolError(VideoidError):
    """The server refused a request."""

    code = "protocol_error"


class SignalingClient:
    def __init__(self, url: str, namespace: str) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self._events: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self.sio.on("*", self._on_any, namespace=namespace)
        self.sio.on("connect_error", self._on_connect_error, namespace=namespace)
        self._refusal: dict[str, Any] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on(
        self, event: str, handler: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
    ) -> None:
        """Also run ``handler`` on each ``event`` (in a task of its own)."""
        self._handlers[event] = handler

    async def _on_any(self, event: str, data: Any = None) -> None:
        payload = data if isinstance(data, dict) else {"value": data}
        self._events[event].put_nowait(payload)
        handler = self._handlers.get(event)
        if handler is not None:
            task = asyncio.get_running_loop().create_task(handler(payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_connect_error(self, data: Any = None) -> None:
        self._refusal = data if isinstance(data, dict) else {"message": str(data)}

    async def connect(
        self,
        auth: dict[str, Any],
        timeout_seconds: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            await self.sio.connect(
                self.url,
                namespaces=[self.namespace],
                auth=auth,
                headers=headers or {},
                transports=["websocket"],
                wait_timeout=timeout_seconds,
            )
        except socketio.exceptions.ConnectionError as err:
            data = self._refusal.get("data")
            detail = data if isinstance(data, dict) else self._refusal
            await self.sio.disconnect()
            raise ProtocolError(
                detail.get("message", str(err)), code=detail.get("code", "connect_failed")
            ) from None

    async def request(
        self, event: str, payload: Any = None, timeout_seconds: float = 20.0
    ) -> dict[str, Any]:
        try:
            reply = await self.sio.call(
                event,
                payload if payload is not None else {},
                namespace=self.namespace,
                timeout=timeout_seconds,
            )
        except socketio.exceptions.TimeoutError:
            raise ProtocolError(f"{event}: no answer", code="timeout") from None
        if not isinstance(reply, dict):
            raise ProtocolError(f"{event}: malformed reply {reply!r}")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise ProtocolError(error.get("message", "refused"), code=error.get("code", "?"))
        return reply

    async def next(self, event: str, timeout_seconds: float = 30.0) -> dict[str, Any]:
        """The next ``event`` from the server (including ones that came already)."""
        try:
            return await asyncio.wait_for(self._events[event].get(), timeout_seconds)
        except TimeoutError:
            raise ProtocolError(
                f"no {event!r} within {timeout_seconds} s", code="timeout"
            ) from None

    def drain(self, event: str) -> list[dict[str, Any]]:
        queue, out = self._events[event], []
        while not queue.empty():
            out.append(queue.get_nowait())
        return out

    def drain_all(self, keep: Container[str] = ()) -> None:
        """Drop every event received and not taken, except those named in ``keep``: a
        long-lived bot's queues would otherwise hold every ``signals`` event of every
        call it took."""
        for name, queue in self._events.items():
            if name not in keep:
                while not queue.empty():
                    queue.get_nowait()

    async def close(self) -> None:
        await self.sio.disconnect()
