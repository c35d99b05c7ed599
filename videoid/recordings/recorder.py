"""The call recorder: both directions, audio and video, as the encoded packets that
arrive (no decoding, no re-encoding), muxed into Matroska as they come and encrypted as
they are written.

It subscribes to the four encoded taps of a call (customer video and audio, operator
video and audio) like any forwarder. Packets are stamped with their arrival time on
one clock (milliseconds from the recording's start), which keeps the four streams in
step; video waits for its first keyframe. The muxer writes into memory (Matroska in
"live" mode needs no seeking, and survives a crash: clusters are self-contained); once
a second the bytes go to the :class:`~videoid.recordings.stream_crypto.SegmentWriter`
in a worker thread (sealing and fsync off the event loop). A killed process loses at
most the last second.

libavformat's interleaver writes nothing until every stream has a packet waiting, and
for VP8 it waits however long that takes (``max_interleave_delta`` does not apply): a
side whose media starts late, or a picture that freezes, would hold the whole call in
memory, unwritten. So once a second every stream that sent nothing meanwhile gets an
empty packet at the current time: the interleaver moves on. The file holds it as an
empty block (no data) — one a second per silent stream, a mark that nothing came;
demuxers and players skip it. Each stream is recorded from when it arrives; the summary says
when each started, which never did, and where one stopped for longer than
``hole_seconds`` (a frozen picture, lost audio).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import logging
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from ..storage.envelope import KeyWrapper
from .stream_crypto import SegmentWriter

logger = logging.getLogger(__name__)

STREAMS = ("customer_video", "customer_audio", "operator_video", "operator_audio")
OPUS_HEAD = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)
"""Matroska wants Opus's identification header as the track's private data (RFC 7845)."""
MS = fractions.Fraction(1, 1000)
HEARTBEAT_AFTER_MS = 500
"""A stream silent for this long gets an empty packet at the next tick."""


class _Buffer(io.RawIOBase):
    """Where the muxer writes: memory, drained once a second."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        with self._lock:
            self._chunks.append(chunk)
            self.position += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        with self._lock:
            chunks, self._chunks = self._chunks, []
        return b"".join(chunks)


class _StreamSink:
    """One tap's subscriber: feeds its packets to the recorder."""

    def __init__(self, recorder: CallRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def push(self, codec: Any, frame: Any, keyframe: bool) -> None:
        self.recorder.push(self.name, frame.data, keyframe)

    def end(self) -> None:
        pass


class CallRecorder:
    def __init__(
        self,
        path: Path,
        recording_id: str,
        wrapper: KeyWrapper,
        *,
        created: float,
        width: int = 640,
        height: int = 480,
        keyframe_seconds: float = 10.0,
        hole_seconds: float = 2.0,
        on_error: Callable[[str], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recording_id = recording_id
        self.path = path
        self._now = now
        self._start = now()
        self._writer = SegmentWriter(path, recording_id, wrapper, created=created)
        # sealed on the event loop (a second of a call is ~0.2 ms of AES-GCM), written
        # and fsynced in a thread that does nothing else: neither a file write stuck
        # behind the journal nor a thread running Python (which takes the GIL from the
        # loop for up to its switch interval) holds the loop up
        self._writer.hold()
        self.wrapped_key = self._writer.wrapped_key
        self.key_id = self._writer.key_id
        self._buffer = _Buffer()
        self._container = av.open(self._buffer, "w", format="matroska", options={"live": "1"})
        self._streams: dict[str, Any] = {}
        for name in STREAMS:
            stream: Any
            if name.endswith("video"):
                stream = self._container.add_stream("vp8", rate=30)
                stream.width, stream.height = width, height
            else:
                stream = self._container.add_stream("opus", rate=48000)
                stream.codec_context.extradata = OPUS_HEAD
            stream.metadata["title"] = name
            self._streams[name] = stream
        self._last: dict[str, int] = {}
        """Each stream's last timestamp (ms), its empty packets included."""
        self._first_real: dict[str, int] = {}
        self._last_real: dict[str, int] = {}
        self.holes: list[dict[str, Any]] = []
        self._hole_ms = round(hole_seconds * 1000)
        self._on_error = on_error
        self._keyed: set[str] = set()
        self.packets: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self.sinks = {name: _StreamSink(self, name) for name in STREAMS}
        self._io_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._end_ms = 0
        self.closed = False
        self.error: str | None = None
        self._sha256 = ""
        self.gaps: list[dict[str, Any]] = []
        self._video_taps: dict[str, Any] = {}
        self._keyframe_seconds = keyframe_seconds
        self._last_keyframe_request = self._start

    def watch(self, name: str, tap: Any) -> None:
        """Subscribe to a tap. Video taps are asked for a keyframe every
        ``keyframe_seconds``, so that a player can seek (it decodes from the keyframe
        before) and a crash mid-call loses no more than that of the picture."""
        tap.subscribe(self.sinks[name])
        if name.endswith("video"):
            self._video_taps[name] = tap  # after a reconnect, the new connection's

    def mark_gap(self, gap: dict[str, Any]) -> None:
        """The customer was away (R12): the gap goes in the summary, and their video
        waits for a keyframe of the new connection."""
        self.gaps.append(gap)
        self._keyed.discard("customer_video")

    def start(self) -> None:
        """Start the clock (time 0 of every stream) and the writing."""
        self._start = self._last_keyframe_request = self._now()
        self._task = asyncio.get_running_loop().create_task(self._drain_every_second())

    def push(self, name: str, data: bytes, keyframe: bool) -> None:
        if self.closed or self.error:
            return
        if name.endswith("video") and name not in self._keyed:
            if not keyframe:
                return  # undecodable until the first keyframe
            self._keyed.add(name)
        at = self._mux(name, data, keyframe)
        if at is None:
            return
        self.packets[name] += 1
        last = self._last_real.get(name)
        if last is None:
            self._first_real[name] = at
        elif at - last > self._hole_ms:
            self._hole(name, last, at)
        self._last_real[name] = at

    def _mux(self, name: str, data: bytes, keyframe: bool) -> int | None:
        """Mux one packet at the current time; its timestamp, None once failed."""
        at = round((self._now() - self._start) * 1000)
        at = max(at, self._last.get(name, -1) + 1)
        self._last[name] = at
        packet = av.Packet(data)
        packet.stream = self._streams[name]
        packet.pts = packet.dts = at
        packet.time_base = MS
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except (av.error.FFmpegError, ValueError) as err:
            self._fail(f"muxing failed: {err}")
            return None
        return at

    def _fail(self, error: str) -> None:
        if self.error is not None:
            return  # told once, the first reason kept
        self.error = error
        logger.error("recording %s: %s", self.recording_id, error)
        if self._on_error is not None:
            self._on_error(error)

    def _hole(self, name: str, start_ms: int, end_ms: int) -> None:
        self.holes.append(
            {
                "stream": name,
                "from": start_ms / 1000,
                "to": end_ms / 1000,
                "seconds": (end_ms - start_ms) / 1000,
            }
        )

    def _heartbeat(self) -> None:
        """An empty packet for each stream silent for ``HEARTBEAT_AFTER_MS``: the
        interleaver then writes what the others sent (see the module docstring)."""
        if self.closed or self.error:
            return
        now_ms = round((self._now() - self._start) * 1000)
        for name in STREAMS:
            if now_ms - self._last.get(name, 0) >= HEARTBEAT_AFTER_MS:
                if self._mux(name, b"", False) is None:
                    return

    async def _drain_every_second(self) -> None:
        """Once a second: keyframe requests, empty packets, a segment sealed and written
        out. :meth:`close` stops it between two seconds, never during a write: a sealed
        segment dropped before the next would make every later one unreadable."""
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)
            if self.closed:
                return
            now = self._now()
            if self._keyframe_seconds and now - self._last_keyframe_request >= (
                self._keyframe_seconds
            ):
                self._last_keyframe_request = now
                for tap in self._video_taps.values():
                    tap.request_keyframe()
            self._heartbeat()
            try:
                sealed = self._drain()
                if sealed:
                    await asyncio.to_thread(self._put_out, sealed)
            except OSError as err:  # a full disk: the call goes on, the recording says why
                self._fail(f"cannot write the recording: {err}")
                return

    def _drain(self) -> bytes:
        """Seal what the muxer wrote as a segment; the sealed bytes to write out."""
        data = self._buffer.take()
        if data:
            self._writer.write(data)
            self._writer.flush()
        return self._writer.take_held()

    def _put_out(self, sealed: bytes) -> None:
        with self._io_lock:
            self._writer.put_out(sealed)

    async def close(self) -> dict[str, Any]:
        """Finish the file; returns what the evidence records of it."""
        if not self.closed:
            self.closed = True
            self._stopping.set()
            if self._task is not None:
                try:
                    await self._task  # lets a write under way finish
                except Exception:  # the file is still closed, the reason kept
                    logger.exception("recording %s: the writer failed", self.recording_id)
                    self.error = self.error or "the recording's writer failed"
            end_ms = round((self._now() - self._start) * 1000)
            for name in STREAMS:
                first = self._first_real.get(name)
                if first is not None and first > self._hole_ms:
                    self._hole(name, 0, first)  # started late
                last = self._last_real.get(name)
                if last is not None and end_ms - last > self._hole_ms:
                    self._hole(name, last, end_ms)  # stopped early
            self.holes.sort(key=lambda hole: (hole["from"], hole["stream"]))
            self._end_ms = end_ms
            await asyncio.to_thread(self._finish)
        return {
            "recording": self.recording_id,
            "segments": self._writer.segments,
            "bytes": self._writer.bytes_in,
            "sha256": self._sha256,
            "packets": dict(self.packets),
            "seconds": round(self._end_ms / 1000, 3),
            "started": {
                name: self._first_real[name] / 1000 if name in self._first_real else None
                for name in STREAMS
            },
            "missing": [name for name in STREAMS if not self.packets[name]],
            "holes": list(self.holes),
            "gaps": list(self.gaps),
            "error": self.error,
        }

    def _finish(self) -> None:
        with self._io_lock:
            try:
                self._container.close()
            except (av.error.FFmpegError, ValueError) as err:
                self.error = self.error or f"closing failed: {err}"
            try:
                if self.error is None:
                    self._writer.write(self._buffer.take())
                self._sha256 = self._writer.close()
            except OSError as err:  # the disk is full: the file stays readable to here
                self.error = self.error or f"cannot write the recording: {err}"
                self._sha256 = ""
