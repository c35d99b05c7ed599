"""The client side of a participant's media, for bots, tests and the benchmark: an aiortc
peer that sends a video file (or pre-encoded packets) and a tone, and counts what it
receives."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack

from ..media.participant_peer import prefer_forwardable_codecs

SAMPLE_RATE = 48000


def rtc_configuration(ice: Mapping[str, Any]) -> RTCConfiguration:
    """The server's ``ice_servers`` and ``ice_transport_policy`` (in ``call_started``,
    the ``accept`` reply) as aiortc takes them."""
    servers = []
    for entry in ice.get("ice_servers") or []:
        if isinstance(entry, str):
            entry = {"urls": entry}
        servers.append(
            RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    relay = ice.get("ice_transport_policy") == "relay"
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL,
    )


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone, so that the other side hears something."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None
        samples = int(AUDIO_PTIME * SAMPLE_RATE)
        t = np.arange(samples * 50) / SAMPLE_RATE
        self._wave = (np.sin(2 * math.pi * 440 * t) * 3000).astype(np.int16)
        self._samples = samples

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        offset = self._pts % (len(self._wave) - self._samples)
        frame = av.AudioFrame.from_ndarray(
            self._wave[offset : offset + self._samples].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += self._samples
        return frame


class MonotonicTrack(MediaStreamTrack):
    """Passes a looping player's frames on with timestamps that keep increasing: the
    player restarts them at each loop, which the VP8 encoder refuses."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._offset = 0
        self._last: int | None = None
        self._step = 1

    async def recv(self) -> Any:
        frame = await self._source.recv()
        if frame.pts is None:
            return frame
        pts = frame.pts + self._offset
        if self._last is not None:
            if pts <= self._last:
                self._offset += self._last + self._step - pts
                pts = self._last + self._step
            else:
                self._step = pts - self._last
        self._last = frame.pts = pts
        return frame

    def stop(self) -> None:
        self._source.stop()
        super().stop()


class FrameCounter:
    """Reads a received track to its end, counting frames and noting the first one's time."""

    def __init__(
        self, track: MediaStreamTrack, on_frame: Callable[[Any], None] | None = None
    ) -> None:
        self.track = track
        self.frames = 0
        self.first_frame_at: float | None = None
        self._on_frame = on_frame
        self.first_frame = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
                self.first_frame.set()
            if self._on_frame is not None:
                self._on_frame(frame)

    async def stop(self) -> None:
        self.task.cancel()
        # wait() does not raise the task's CancelledError: a cancellation of our caller
        # still reaches it (catching CancelledError here would swallow that too)
        await asyncio.wait([self.task])


class ClientPeer:
    """One participant's aiortc peer: sends ``video`` (a file path or a track) and a
    tone; receives and counts the other side's media. ``ice``: the server's
    ``ice_servers`` and ``ice_transport_policy``."""

    def __init__(
        self,
        video: str | Path | MediaStreamTrack | None,
        audio: MediaStreamTrack | None = None,
        on_video_frame: Callable[[Any], None] | None = None,
        ice: Mapping[str, Any] | None = None,
    ) -> None:
        # ``ice``: what the server gave (its STUN/TURN servers, relay or not); without
        # it, aiortc's defaults
        self.pc = RTCPeerConnection(rtc_configuration(ice) if ice is not None else None)
        self._player: MediaPlayer | None = None
        if isinstance(video, str | Path):
            self._player = MediaPlayer(str(video), loop=True)
            assert self._player.video is not None, f"{video} has no video"
            video = MonotonicTrack(self._player.video)
        self.counters: dict[str, FrameCounter] = {}
        self._on_video_frame = on_video_frame
        self.pc.addTrack(audio or ToneTrack())
        if video is not None:
            self.pc.addTrack(video)
        else:  # no camera: still receive the other side's video
            self.pc.addTransceiver("video", direction="recvonly")
        prefer_forwardable_codecs(self.pc)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.counters[track.kind] = FrameCounter(
            track, self._on_video_frame if track.kind == "video" else None
        )

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def frames(self, kind: str) -> int:
        counter = self.counters.get(kind)
        return counter.frames if counter else 0

    async def wait_frames(self, kind: str, count: int, timeout_seconds: float) -> int:
        """Wait until ``count`` frames of ``kind`` arrived; return how many did."""
        deadline = time.monotonic() + timeout_seconds
        while self.frames(kind) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.frames(kind)

    async def close(self) -> None:
        try:
            for counter in self.counters.values():
                await counter.stop()
            await self.pc.close()
        finally:  # the player's thread decodes until stopped, whatever happened above
            if self._player is not None:
                for track in (self._player.audio, self._player.video):
                    if track is not None:
                        track.stop()
