"""Outgoing tracks of a participant's peer connection.

:class:`ForwardedTrack` carries encoded frames from another participant's
:class:`~videoid.media.encoded_tap.EncodedTap` as ``av.Packet``s, which aiortc's sender
packetizes without encoding. :class:`RelayedTrack` is the plain aiortc way, kept for
comparison: decoded frames that the sender re-encodes.

Both exist from the moment the peer connection is negotiated and are fed once the other
participant's media arrives, so that each side negotiates once, in any order.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .encoded_tap import EncodedFrame, EncodedTap

logger = logging.getLogger(__name__)

CLOCK_RATE = {"video": 90000, "audio": 48000}
FRAME_TICKS = {"video": 90000 // 30, "audio": 960}
"""The timestamp step assumed across a change of source."""
MAX_QUEUED = {"video": 30, "audio": 50}
"""Frames waiting for the sender before the track drops them (the peer is too slow)."""


class ForwardedTrack(MediaStreamTrack):
    """Encoded frames forwarded from a tap, as ``av.Packet``s. Video waits for a keyframe
    after it (re)starts or had to drop frames, and asks the source for one."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue()
        self._source: EncodedTap | None = None
        self._time_base = fractions.Fraction(1, CLOCK_RATE[kind])
        self._need_keyframe = kind == "video"
        self._offset = 0
        self._source_origin: int | None = None
        self._last_pts = -FRAME_TICKS[kind]
        self.frames_forwarded = 0
        self.frames_dropped = 0

    # -- source side ------------------------------------------------------------------

    def attach(self, source: EncodedTap) -> None:
        self.detach()
        self._source = source
        self._source_origin = None
        self._need_keyframe = self.kind == "video"
        source.subscribe(self)

    def detach(self) -> None:
        if self._source is not None:
            self._source.unsubscribe(self)
            self._source = None

    def push(self, codec: Any, frame: EncodedFrame, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self._need_keyframe:
            if not keyframe:
                self.frames_dropped += 1
                self.request_keyframe()
                return
            self._need_keyframe = False
        if self._queue.qsize() >= MAX_QUEUED[self.kind]:
            # The sender is not keeping up: drop what waits and restart on a keyframe.
            while not self._queue.empty():
                self._queue.get_nowait()
                self.frames_dropped += 1
            self.frames_dropped += 1
            if self.kind == "video":
                self._need_keyframe = True
                self.request_keyframe()
                return
        if self._source_origin is None:
            self._source_origin = frame.timestamp
            self._offset = self._last_pts + FRAME_TICKS[self.kind]
        packet = av.Packet(frame.data)
        packet.pts = self._offset + (frame.timestamp - self._source_origin)
        packet.time_base = self._time_base
        self._last_pts = packet.pts
        self._queue.put_nowait(packet)

    def end(self) -> None:
        """The source stopped; wait for the next one."""
        self._source = None

    def request_keyframe(self) -> None:
        """Called for a PLI/FIR from our peer, or when we dropped frames."""
        if self._source is not None:
            self._source.request_keyframe()

    # -- sender side ------------------------------------------------------------------

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.frames_forwarded += 1
        return packet

    def stop(self) -> None:
        self.detach()
        if self.readyState == "live":
            self._queue.put_nowait(None)
        super().stop()


class RelayedTrack(MediaStreamTrack):
    """Decoded frames from another participant's track, re-encoded by the sender."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._source_ready = asyncio.Event()
        self.frames_forwarded = 0
        self.frames_dropped = 0

    def attach_track(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._source_ready.set()

    def detach(self) -> None:
        self._source = None
        self._source_ready.clear()

    def request_keyframe(self) -> None:
        pass  # the sender's encoder makes keyframes itself

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            await self._source_ready.wait()
            source = self._source
            if source is None:
                continue
            try:
                frame = await source.recv()
            except MediaStreamError:
                if self._source is source:
                    self.detach()
                continue
            self.frames_forwarded += 1
            return frame

    def stop(self) -> None:
        self._source_ready.set()
        super().stop()
