"""The connectivity test before the queue: a short WebRTC session with the server.

The customer's page (or the bot) offers a peer connection carrying one data channel,
``probe``. Over it the server measures, by itself, what the call will need:

- round-trip time: the server sends ``{"type": "ping", "seq", "t"}`` messages and the
  client answers each with ``{"type": "pong", "seq", "t"}`` (``t`` echoed unchanged);
- upstream bitrate: the client sends binary chunks for a couple of seconds, then
  ``{"type": "done"}``; the server counts what arrived between the first and the last
  chunk.

The server then sends ``{"type": "result", ...}`` and closes. The figures are the
server's own measurements, not the client's report: the path checked is the one media
will take (ICE, DTLS and SCTP through the same server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)

from ..errors import InvalidSdp, ProbeBusy, ServerBusy
from .ice_policy import IcePolicy
from .participant_peer import parse_offer

logger = logging.getLogger(__name__)

PINGS = 5
PING_INTERVAL = 0.2
MAX_UPLOAD_BYTES = 4_000_000
"""The upload stops counting here, so that a fast client cannot keep the server busy."""
TIMEOUT = 20.0


@dataclass(frozen=True)
class ProbeResult:
    rtt_ms: float | None
    """Median round-trip time of the answered pings."""
    bitrate_kbps: float | None
    """Upstream throughput measured at the server."""
    pings_answered: int
    bytes_received: int
    passed: bool
    problems: tuple[str, ...]
    """``no_connection``, ``high_latency``, ``low_bandwidth``."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = list(self.problems)
        return out


class ConnectivityProbe:
    """The server's end of one connectivity test."""

    def __init__(
        self,
        *,
        policy: IcePolicy | None = None,
        max_sdp_bytes: int = 65536,
        max_rtt_ms: float = 800.0,
        min_bitrate_kbps: float = 300.0,
        on_result: Callable[[ProbeResult], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = TIMEOUT,
    ) -> None:
        self._policy = policy or IcePolicy()
        self._timeout_seconds = timeout_seconds
        self._max_sdp_bytes = max_sdp_bytes
        self._max_rtt_ms = max_rtt_ms
        self._min_bitrate_kbps = min_bitrate_kbps
        self._on_result = on_result
        self._clock = clock
        self._pc: RTCPeerConnection | None = None
        self._rtts: list[float] = []
        self._bytes = 0
        self._first: float | None = None
        self._last: float | None = None
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._runner: asyncio.Future[None] | None = None
        self.result: ProbeResult | None = None

    async def answer(self, sdp: Any) -> str:
        """Answer the client's offer (one data channel, no media). Raises InvalidSdp."""
        parsed = parse_offer(sdp, self._max_sdp_bytes)
        if [m.kind for m in parsed.media] != ["application"]:
            raise InvalidSdp("the connectivity test's offer carries one data channel only")
        sdp = self._policy.remote_sdp(sdp, "connectivity test")
        pc = self._pc = RTCPeerConnection(
            RTCConfiguration(iceServers=self._policy.server_ice_servers())
        )
        pc.on("datachannel", self._on_channel)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            with self._policy.gathering():
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as err:
            await self.close()
            raise InvalidSdp(f"the offer was refused: {err}") from err
        except BaseException:  # cancelled meanwhile: the sockets go with it
            await self.close()
            raise
        if self._pc is None:  # closed while answering
            raise ProbeBusy("the connectivity test was stopped")
        self._task = asyncio.ensure_future(self._expire())
        return self._policy.local_sdp(str(pc.localDescription.sdp))

    def _on_connection_state(self) -> None:
        # A connection that failed (ICE found no path, or the client went) ends the test
        # at once: its sockets are not kept for the rest of the timeout.
        pc = self._pc
        if pc is not None and pc.connectionState == "failed" and self._task is not None:
            self._task.cancel()
            self._task = asyncio.ensure_future(self._expire(0))

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != "probe" or self._task is None:
            channel.close()
            return

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if isinstance(message, bytes):
                now = self._clock()
                if self._bytes < MAX_UPLOAD_BYTES:
                    self._first = now if self._first is None else self._first
                    self._last = now
                    self._bytes += len(message)
                return
            try:
                data = json.loads(message)
            except ValueError:
                return
            if not isinstance(data, dict):
                return
            if data.get("type") == "pong" and isinstance(data.get("t"), float | int):
                self._rtts.append((self._clock() - float(data["t"])) * 1000)
            elif data.get("type") == "done":
                self._done.set()

        async def run() -> None:
            for seq in range(PINGS):
                channel.send(json.dumps({"type": "ping", "seq": seq, "t": self._clock()}))
                await asyncio.sleep(PING_INTERVAL)
            channel.send(json.dumps({"type": "upload"}))
            await self._done.wait()
            if self.result is not None:  # timed out or closed meanwhile
                return
            result = self._finish()
            if self._on_result is not None:  # kept before the client hears of it
                await self._on_result(result)
            channel.send(json.dumps({"type": "result", **result.to_json()}))
            await asyncio.sleep(0.5)  # let the result leave before closing
            await self.close()

        def begin() -> None:
            self._runner = asyncio.ensure_future(run())

        if channel.readyState == "open":
            begin()
        else:
            channel.on("open", begin)

    def _finish(self) -> ProbeResult:
        rtt = round(statistics.median(self._rtts), 1) if self._rtts else None
        bitrate = None
        if self._first is not None and self._last is not None and self._last > self._first:
            bitrate = round(self._bytes * 8 / (self._last - self._first) / 1000, 1)
        problems = []
        if rtt is None or bitrate is None:
            problems.append("no_connection")
        else:
            if rtt > self._max_rtt_ms:
                problems.append("high_latency")
            if bitrate < self._min_bitrate_kbps:
                problems.append("low_bandwidth")
        self.result = ProbeResult(
            rtt_ms=rtt,
            bitrate_kbps=bitrate,
            pings_answered=len(self._rtts),
            bytes_received=self._bytes,
            passed=not problems,
            problems=tuple(problems),
        )
        return self.result

    async def _expire(self, after_seconds: float | None = None) -> None:
        await asyncio.sleep(self._timeout_seconds if after_seconds is None else after_seconds)
        if self.result is None:
            logger.info("connectivity test timed out or failed")
            result = self._finish()
            if self._on_result is not None:
                await self._on_result(result)
        await self.close()

    async def close(self) -> None:
        self._done.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        pc, self._pc = self._pc, None
        if pc is not None:
            await pc.close()


class Probes:
    """The connectivity tests in progress: at most ``limit`` in all and one per session.

    A test's place is taken before anything is awaited (one event loop: a check and an
    insert with no ``await`` between them cannot interleave), so parallel offers never
    exceed the limits. A session's test holds its place until it ends (its result, a
    failed connection, or its timeout); meanwhile another offer of that session gets
    ``probe_busy``.
    """

    def __init__(self, limit: int = 16) -> None:
        self._limit = limit
        self._probes: dict[str, ConnectivityProbe] = {}

    def __len__(self) -> int:
        return len(self._probes)

    async def start(self, session_id: str, probe: ConnectivityProbe, sdp: Any) -> str:
        """Answer ``probe``'s offer in the session's place. Raises ProbeBusy (409),
        ServerBusy (503) or InvalidSdp."""
        if session_id in self._probes:
            raise ProbeBusy()
        if len(self._probes) >= self._limit:
            raise ServerBusy("too many connectivity tests are running; try again in a moment")
        self._probes[session_id] = probe
        try:
            return await probe.answer(sdp)
        except BaseException:
            self.finished(session_id, probe)
            await probe.close()
            raise

    def finished(self, session_id: str, probe: ConnectivityProbe) -> None:
        if self._probes.get(session_id) is probe:
            del self._probes[session_id]

    async def close(self) -> None:
        probes, self._probes = list(self._probes.values()), {}
        for probe in probes:
            await probe.close()
