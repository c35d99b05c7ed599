"""The pieces of encoded forwarding, without a network: the forwarding jitter buffer and
the forwarded track's keyframe gating, dropping and timestamps."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace
from typing import Any

from aiortc.rtp import RtpPacket

from videoid.media.encoded_tap import is_keyframe
from videoid.media.forwarded_track import MAX_QUEUED, ForwardedTrack
from videoid.media.forwarding_jitter_buffer import ForwardingJitterBuffer


def rtp(seq: int, ts: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]
    return packet


def test_video_frame_released_at_its_marker_not_at_the_next_frame() -> None:
    buffer = ForwardingJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(rtp(100, 9000, b"a"))[1] is None
    assert buffer.add(rtp(101, 9000, b"b"))[1] is None
    frame = buffer.add(rtp(102, 9000, b"c", marker=True))[1]
    assert frame is not None and (frame.data, frame.timestamp) == (b"abc", 9000)
    frame = buffer.add(rtp(103, 15000, b"d", marker=True))[1]
    assert frame is not None and frame.data == b"d"


def test_video_frame_waits_for_a_missing_packet() -> None:
    buffer = ForwardingJitterBuffer(capacity=512, is_video=True)
    buffer.add(rtp(10, 0, b"x", marker=True))
    assert buffer.add(rtp(11, 6000, b"a"))[1] is None
    assert buffer.add(rtp(13, 6000, b"c", marker=True))[1] is None  # 12 is missing
    frame = buffer.add(rtp(12, 6000, b"b"))[1]  # retransmitted
    assert frame is not None and frame.data == b"abc"


def test_audio_packets_are_released_at_once_in_order() -> None:
    buffer = ForwardingJitterBuffer(capacity=16)
    released = [buffer.add(rtp(s, s * 960, bytes([s])))[1] for s in (1, 2, 3)]
    assert [f.data for f in released if f is not None] == [b"\x01", b"\x02", b"\x03"]


class FakeTap:
    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.sinks: list[Any] = []

    def subscribe(self, sink: Any) -> None:
        self.sinks.append(sink)

    def unsubscribe(self, sink: Any) -> None:
        self.sinks.remove(sink)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


VP8 = SimpleNamespace(name="VP8")
KEY, DELTA = b"\x10rest", b"\x11rest"  # P bit clear / set


def frame(ts: int, data: bytes) -> Any:
    return SimpleNamespace(timestamp=ts, data=data)


async def test_video_waits_for_a_keyframe_and_asks_for_one() -> None:
    assert is_keyframe("VP8", KEY) and not is_keyframe("VP8", DELTA)
    track, tap = ForwardedTrack("video"), FakeTap()
    track.attach(tap)  # type: ignore[arg-type]
    track.push(VP8, frame(1000, DELTA), False)
    assert track.frames_dropped == 1 and tap.keyframe_requests == 1
    track.push(VP8, frame(7000, KEY), True)
    track.push(VP8, frame(13000, DELTA), False)
    first, second = await track.recv(), await track.recv()
    assert bytes(first) == KEY and bytes(second) == DELTA
    assert first.time_base == Fraction(1, 90000) and second.pts - first.pts == 6000
    track.stop()


async def test_a_slow_receiver_drops_and_restarts_on_a_keyframe() -> None:
    track, tap = ForwardedTrack("video"), FakeTap()
    track.attach(tap)  # type: ignore[arg-type]
    track.push(VP8, frame(0, KEY), True)
    for i in range(1, MAX_QUEUED["video"] + 5):
        track.push(VP8, frame(i * 6000, DELTA), False)
    assert track.frames_dropped > 0 and tap.keyframe_requests >= 1
    track.push(VP8, frame(999_000, KEY), True)
    packet = await track.recv()
    assert bytes(packet) == KEY  # nothing stale is sent after the drop
    track.stop()


async def test_timestamps_continue_across_a_change_of_source() -> None:
    track = ForwardedTrack("audio")
    opus = SimpleNamespace(name="opus")
    first, second = FakeTap(), FakeTap()
    track.attach(first)  # type: ignore[arg-type]
    track.push(opus, frame(50_000, b"a"), True)
    track.attach(second)  # type: ignore[arg-type]
    assert first.sinks == [] and second.sinks == [track]
    track.push(opus, frame(7, b"b"), True)
    a, b = await track.recv(), await track.recv()
    assert b.pts > a.pts  # never backwards, whatever the new source's clock
    track.stop()
