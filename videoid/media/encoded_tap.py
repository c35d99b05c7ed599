"""Taking encoded frames out of an aiortc receiver, before (and instead of) decoding.

aiortc's ``RTCRtpReceiver`` reassembles each frame in its jitter buffer and puts
``(codec, JitterFrame)`` on a ``queue.Queue`` that its decoder thread reads. An
:class:`EncodedTap` takes that queue's place: ``put`` runs on the event loop and hands
the encoded frame to every subscriber (forwarders, later the recorder); only when a
consumer asks for decoded frames (analysis) does the frame also reach the decoder
thread through ``get``. So a forwarded stream is never decoded.

This relies on one private attribute of aiortc's receiver; aiortc's version is pinned
in pyproject.toml and :meth:`EncodedTap.install` fails loudly if it moves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from typing import Any, Protocol

from ..errors import MediaError
from . import forwarding_jitter_buffer

logger = logging.getLogger(__name__)

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
PLI_INTERVAL_SECONDS = 0.5
"""At most one upstream keyframe request per this interval."""


class EncodedFrame(Protocol):
    data: bytes
    timestamp: int


class EncodedSink(Protocol):
    def push(self, codec: Any, frame: EncodedFrame, keyframe: bool) -> None: ...

    def end(self) -> None: ...


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """True when ``data`` starts a decodable picture (VP8: P bit clear, RFC 6386 9.1)."""
    if codec_name == "VP8":
        return bool(data) and not data[0] & 0x01
    return codec_name != "H264"  # audio frames are independent; H264 is not forwarded


class EncodedTap:
    """Stands in for a receiver's decoder queue; see the module docstring."""

    def __init__(self, receiver: Any, kind: str) -> None:
        self.kind = kind
        self._receiver = receiver
        self._sinks: list[EncodedSink] = []
        self._decoder_input: queue.Queue[Any] = queue.Queue()
        self.decode = False
        """When True, frames also go to aiortc's decoder thread (for analysis)."""
        self.frames = 0
        self._last_pli = 0.0
        self._pli_task: asyncio.Task[None] | None = None

    @classmethod
    def install(cls, receiver: Any, kind: str) -> EncodedTap:
        """Put a tap in place of ``receiver``'s decoder queue, and a jitter buffer that
        releases frames without waiting for the next one. Must run before the receiver
        starts (aiortc starts it once DTLS is up, after the ``track`` event)."""
        if not isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue):
            raise MediaError("this aiortc version does not expose its decoder queue")
        tap = cls(receiver, kind)
        setattr(receiver, _DECODER_QUEUE, tap)
        forwarding_jitter_buffer.install(receiver, kind)
        return tap

    # -- what aiortc's receiver and decoder thread call ---------------------------------

    def put(self, item: Any) -> None:
        if item is None:  # the receiver stops
            for sink in list(self._sinks):
                sink.end()
            self._decoder_input.put(None)
            return
        codec, frame = item
        self.frames += 1
        keyframe = is_keyframe(codec.name, frame.data)
        for sink in self._sinks:
            sink.push(codec, frame, keyframe)
        if self.decode:
            self._decoder_input.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._decoder_input.get(block, timeout)

    # -- subscribers ------------------------------------------------------------------

    def subscribe(self, sink: EncodedSink) -> None:
        self._sinks.append(sink)
        self.request_keyframe()

    def unsubscribe(self, sink: EncodedSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def request_keyframe(self) -> None:
        """Ask the sender for a keyframe (RTCP PLI), at most every half second."""
        if self.kind != "video":
            return
        now = time.monotonic()
        if now - self._last_pli < PLI_INTERVAL_SECONDS or (
            self._pli_task is not None and not self._pli_task.done()
        ):
            return
        self._last_pli = now
        self._pli_task = asyncio.get_running_loop().create_task(self._send_pli())

    async def _send_pli(self) -> None:
        try:
            for source in self._receiver.getSynchronizationSources():
                await self._receiver._send_rtcp_pli(source.source)
        except ConnectionError:
            pass  # the transport is closing

    async def close(self) -> None:
        if self._pli_task is not None:
            self._pli_task.cancel()
            try:
                await self._pli_task
            except asyncio.CancelledError:
                pass
