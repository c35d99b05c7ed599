"""The load generator's participant: sends the pre-encoded clip and records, for every
frame it receives, which sent frame it was and when it arrived."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..media import forwarding_jitter_buffer
from ..media.encoded_tap import EncodedTap
from ..media.participant_peer import prefer_forwardable_codecs
from .clip import FPS, Clip, frame_hash, read_barcode


class ClipVideoTrack(MediaStreamTrack):
    """Sends the clip's VP8 frames at 15 fps as ``av.Packet``s; a keyframe request
    restarts it at frame 0. Remembers when each clip index was last sent."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self._clip = clip
        self._n = 0
        self._index = 0
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}
        self.sent_times: list[float] = []

    def request_keyframe(self) -> None:
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        index = self._index
        packet = av.Packet(self._clip.video[index])
        packet.pts = self._n * (90000 // FPS)
        packet.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        self._index = (index + 1) % len(self._clip.video)
        now = time.monotonic()
        self.sent_at[index] = now
        self.sent_times.append(now)
        return packet


class ClipAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self._clip = clip
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._clip.audio[self._n % len(self._clip.audio)])
        packet.pts = self._n * 960
        packet.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return packet


class Arrivals:
    """What one side received: (send time, arrival time) of each identified video frame."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float]] = []
        self.unidentified = 0
        self.first_at: float | None = None
        self.audio_frames = 0
        self.source: ClipVideoTrack | None = None
        """The other side's sender, whose send times the frames are matched against."""

    def arrived(self, index: int | None) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        if index is None or self.source is None or index not in self.source.sent_at:
            self.unidentified += 1
            return
        self.frames.append((self.source.sent_at[index], now))


class _HashSink:
    def __init__(self, arrivals: Arrivals, table: dict[bytes, int]) -> None:
        self._arrivals, self._table = arrivals, table

    def push(self, codec: Any, frame: Any, keyframe: bool) -> None:
        self._arrivals.arrived(self._table.get(frame_hash(frame.data)))

    def end(self) -> None:
        pass


class _AudioCount:
    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals

    def push(self, codec: Any, frame: Any, keyframe: bool) -> None:
        self._arrivals.audio_frames += 1

    def end(self) -> None:
        pass


class BenchPeer:
    """``identify``: ``hash`` reads frames without decoding (their bytes arrive exactly as
    sent when the server forwards encoded frames); ``barcode`` decodes them and reads the
    index drawn in the picture (needed when the server re-encodes)."""

    def __init__(self, clip: Clip, identify: str, table: dict[bytes, int]) -> None:
        self.pc = RTCPeerConnection()
        self.video = ClipVideoTrack(clip)
        self.arrivals = Arrivals()
        self._identify = identify
        self._table = table
        self._tasks: list[asyncio.Task[None]] = []
        for track in (ClipAudioTrack(clip), self.video):
            sender = self.pc.addTrack(track)
            if track.kind == "video":
                sender._send_keyframe = self.video.request_keyframe  # type: ignore[method-assign]
        prefer_forwardable_codecs(self.pc)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        if track.kind == "audio":
            EncodedTap.install(receiver, "audio").subscribe(_AudioCount(self.arrivals))
        elif self._identify == "hash":
            EncodedTap.install(receiver, "video").subscribe(_HashSink(self.arrivals, self._table))
        else:
            # the same prompt release of frames as in the hash case, so that both modes
            # measure the server's path and not this receiver's buffering
            forwarding_jitter_buffer.install(receiver, "video")
            self._tasks.append(asyncio.get_running_loop().create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                self.arrivals.arrived(read_barcode(frame))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
