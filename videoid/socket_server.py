"""The Socket.IO server, guarded against malformed frames.

python-socketio and python-engineio log a full traceback for every frame they cannot
decode and keep the socket open, so a client can write megabytes of log a second. Here
a socket that sends a malformed frame (Engine.IO or Socket.IO) is closed at once and
costs one log line, and those lines are rate-limited across all sockets
(:class:`RefusalLog`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import engineio
import socketio
from aiohttp import WSCloseCode, web
from engineio.async_drivers import aiohttp as engineio_aiohttp

from .signaling import TokenBucket

logger = logging.getLogger(__name__)

CLOSE_SECONDS = 2.0
"""How long a closing websocket waits for the client's close frame."""
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError)
"""What the libraries raise on a frame they cannot decode or dispatch."""


class RefusalLog:
    """At most ``burst`` lines at once and ``per_second`` sustained; the lines left out
    are counted in the next one written. Pure apart from the clock it is given."""

    def __init__(self, per_second: float = 1.0, burst: int = 5, clock: Any = time.monotonic):
        self._clock = clock
        self._bucket = TokenBucket(per_second, burst, clock())
        self._left_out = 0

    def refused(self, sid: str, err: BaseException) -> None:
        if not self._bucket.take(self._clock()):
            self._left_out += 1
            return
        left_out, self._left_out = self._left_out, 0
        logger.warning(
            "socket %s: malformed frame (%s); the socket is closed%s",
            sid,
            type(err).__name__,
            f" ({left_out} more not logged)" if left_out else "",
        )


class _GuardedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp websocket, closed when its socket is refused; an Engine.IO
    frame that does not decode (raised out of engineio's read loop) refuses it."""

    server: _EngineServer
    refused = False

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, timeout=CLOSE_SECONDS
        )
        await self._sock.prepare(request)
        self.environ = environ
        sid: str = self.handler.__self__.sid
        self.server.websockets[sid] = self
        try:
            await self.handler(self)
        except MALFORMED as err:
            self.server.refusals.refused(sid, err)
            await self._sock.close(code=WSCloseCode.PROTOCOL_ERROR)
            await self.server.close_socket(sid)  # its writer and its Socket.IO session
        finally:
            self.server.websockets.pop(sid, None)
        return self._sock

    async def wait(self) -> Any:
        if self.refused:  # ends engineio's read loop, which closes the socket
            raise OSError("the socket was refused")
        return await super().wait()


class _EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the driver's table is shared by every server of the process: copied
        self._async: dict[str, Any] = {**self._async, "websocket": _GuardedWebSocket}
        self.websockets: dict[str, _GuardedWebSocket] = {}
        self.refusals: RefusalLog = RefusalLog()

    def refuse(self, sid: str, err: BaseException) -> None:
        """Log (rate-limited) and close the websocket of socket ``sid``."""
        self.refusals.refused(sid, err)
        ws = self.websockets.get(sid)
        if ws is not None:
            ws.refused = True

    async def close_socket(self, sid: str) -> None:
        """Close socket ``sid`` without waiting for its queue to drain (a refused
        client need not read it)."""
        socket = self.sockets.pop(sid, None)
        if socket is not None:
            await socket.close(wait=False)


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` whose sockets are closed on their first malformed
    frame, with one rate-limited log line."""

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return _EngineServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        eio: _EngineServer = self.eio
        ws = eio.websockets.get(eio_sid)
        if ws is not None and ws.refused:
            return  # what a refused client sent before its socket closed
        try:
            await super()._handle_eio_message(eio_sid, data)
        except MALFORMED as err:
            self._binary_packet.pop(eio_sid, None)
            eio.refuse(eio_sid, err)
            if eio_sid not in eio.websockets:  # long-polling: no websocket to close
                await eio.close_socket(eio_sid)
