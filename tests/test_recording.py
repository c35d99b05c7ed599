"""A real call recorded through the server: both directions, audio and video, as the
packets arrived, encrypted as written; decrypted, it plays (R13)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc import MediaStreamTrack

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.customer_client.invitations import Invitation
from videoid.recordings.stream_crypto import ReadResult, open_segments

from .conftest import PASSWORD, Server, StartServer


async def _recorded_call(
    start_server: StartServer, operator_video: Path
) -> tuple[Server, Invitation, OperatorBot]:
    """A server that records (no live analysis), an invitation, and an operator who
    watches the call 4 s, then rejects."""
    server = await start_server(live={"workers": 0})
    await server.operator("olga")
    invitation = await server.invite()
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="rejected",
        watch_seconds=4.0, min_video_frames=5,
    )  # fmt: skip
    return server, invitation, operator


async def test_a_call_is_recorded_both_ways(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server, invitation, operator = await _recorded_call(start_server, operator_video)
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)

    services = server.services
    [recording] = await services.repo.recordings(invitation.session_id)
    assert recording["status"] == "complete", recording
    summary = recording["summary"]
    assert summary["segments"] >= 3 and summary["error"] is None
    assert all(summary["packets"][s] > 20 for s in summary["packets"]), summary["packets"]

    path = services.config.data_path / "recordings" / recording["file"]
    raw = path.read_bytes()
    # encrypted at rest: no Matroska codec name or Opus header shows (markers long enough
    # that random ciphertext does not hold them by chance, as it does "VP8" in a few MB)
    assert b"V_VP8" not in raw and b"A_OPUS" not in raw and b"OpusHead" not in raw
    result = ReadResult()
    plain = b"".join(
        open_segments(path, services.objects.files.wrapper, result, recording["wrapped_key"])
    )
    assert result.complete and result.sha256 == summary["sha256"]
    (tmp_path / "call.mkv").write_bytes(plain)

    with av.open(str(tmp_path / "call.mkv")) as container:
        streams = {s.metadata.get("title"): s for s in container.streams}
        assert set(streams) == {
            "customer_video", "customer_audio", "operator_video", "operator_audio"
        }  # fmt: skip
        assert {streams[n].codec_context.name for n in streams} == {"vp8", "opus"}
        last: dict[str, float] = {}
        frames = dict.fromkeys(streams, 0)
        for packet in container.demux():
            title = packet.stream.metadata.get("title")
            if packet.pts is not None:
                last[title] = float(packet.pts * packet.time_base)
            if packet.stream.type == "video" and packet.size:
                frames[title] += sum(1 for _ in packet.decode())
            elif packet.size:
                frames[title] += 1
    # both videos decode, both audio streams carry ~50 packets a second, in step
    assert frames["customer_video"] >= 30 and frames["operator_video"] >= 30, frames
    assert frames["customer_audio"] >= 150 and frames["operator_audio"] >= 150, frames
    seconds = summary["seconds"]
    assert 3.5 <= seconds <= 20
    assert all(abs(last[n] - seconds) < 1.5 for n in last), (last, seconds)


async def test_a_full_disk_stops_the_recording_not_the_call(tmp_path: Path) -> None:
    """The disk fills while recording: the recorder says why and takes no more packets;
    nothing raises into the call's media path, and what was written still reads."""
    from videoid.recordings.recorder import CallRecorder
    from videoid.storage.envelope import LocalMasterKey

    key = LocalMasterKey(bytes(32))
    recorder = CallRecorder(tmp_path / "r.vrec", "rec-full", key, created=1.0)
    recorder.start()
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(100)  # a VP8 key frame

    def all_streams() -> None:  # the muxer interleaves: it writes once every stream has data
        for side in ("customer", "operator"):
            recorder.push(f"{side}_video", keyframe, True)
            recorder.push(f"{side}_audio", b"\xfc" + bytes(40), True)

    for _ in range(3):
        all_streams()
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.3)  # a segment written

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    recorder._writer.write = full  # type: ignore[method-assign]
    for _ in range(3):
        all_streams()
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.3)
    assert recorder.error is not None and "No space left" in recorder.error
    recorder.push("customer_audio", b"\xfc" + bytes(40), True)  # ignored, no exception
    summary = await recorder.close()  # and closing does not raise either
    assert summary["error"] == recorder.error
    result = ReadResult()
    segments = list(open_segments(tmp_path / "r.vrec", key, result))
    assert len(segments) >= 1 and segments[0][:4] == b"\x1aE\xdf\xa3"  # still reads (Matroska)


async def test_the_recorder_asks_for_keyframes_and_marks_gaps(tmp_path: Path) -> None:
    """While recording, each video sender is asked for a keyframe every
    ``keyframe_seconds`` (a player seeks from the keyframe before); a gap (R12) is
    kept in the summary and the customer's video waits for a new keyframe."""
    from videoid.recordings.recorder import CallRecorder
    from videoid.storage.envelope import LocalMasterKey

    class Tap:
        def __init__(self, kind: str) -> None:
            self.kind, self.sinks, self.requests = kind, [], 0

        def subscribe(self, sink: object) -> None:
            self.sinks.append(sink)

        def request_keyframe(self) -> None:
            self.requests += 1

    recorder = CallRecorder(
        tmp_path / "r.vrec", "rec-kf", LocalMasterKey(bytes(32)), created=1.0, keyframe_seconds=1.0
    )
    video, audio = Tap("video"), Tap("audio")
    recorder.watch("customer_video", video)
    recorder.watch("customer_audio", audio)
    assert video.sinks == [recorder.sinks["customer_video"]]
    recorder.start()
    await asyncio.sleep(2.5)
    assert video.requests >= 1 and audio.requests == 0

    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(100)
    delta = bytes([0x11, 0x02, 0x00]) + bytes(50)
    recorder.push("customer_video", keyframe, True)
    recorder.push("customer_video", delta, False)
    recorder.mark_gap({"from": 1.0, "to": 3.0, "seconds": 2.0, "resumed": True})
    recorder.push("customer_video", delta, False)  # the new connection's: not before a keyframe
    assert recorder.packets["customer_video"] == 2
    recorder.push("customer_video", keyframe, True)
    assert recorder.packets["customer_video"] == 3
    summary = await recorder.close()
    assert summary["gaps"] == [{"from": 1.0, "to": 3.0, "seconds": 2.0, "resumed": True}]


KEYFRAME = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(100)  # a VP8 key frame
DELTA = bytes([0x11, 0x02, 0x00]) + bytes(50)
OPUS = b"\xfc" + bytes(40)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _play(recorder: object, clock: _Clock, seconds: float, streams: dict[str, bool]) -> int:
    """``seconds`` of media at 50 packets a second from the streams marked True, with
    the recorder's once-a-second tick; the bytes it wrote out meanwhile."""
    written = 0
    steps = round(seconds * 50)
    for step in range(steps):
        clock.t += 0.02
        for name, on in streams.items():
            if not on:
                continue
            if name.endswith("video"):
                recorder.push(name, KEYFRAME if step % 50 == 0 else DELTA, step % 50 == 0)  # type: ignore[attr-defined]
            else:
                recorder.push(name, OPUS, True)  # type: ignore[attr-defined]
        if step % 50 == 49:
            recorder._heartbeat()  # type: ignore[attr-defined]
            sealed = recorder._drain()  # type: ignore[attr-defined]
            recorder._put_out(sealed)  # type: ignore[attr-defined]
            written += len(sealed)
    return written


async def test_a_side_whose_media_starts_late_is_recorded_from_when_it_arrives(
    tmp_path: Path,
) -> None:
    """Issue 20.6/12: the customer's media 20 s late. The operator's side is written out
    as it comes (before, the muxer held the whole call in memory until every stream had
    a packet); the customer's from when it arrived; the summary says when each started
    and lists the late start and a 5 s freeze as holes."""
    from videoid.recordings.recorder import CallRecorder
    from videoid.storage.envelope import LocalMasterKey

    clock = _Clock()
    key = LocalMasterKey(bytes(32))
    recorder = CallRecorder(tmp_path / "r.vrec", "rec-late", key, created=1.0, now=clock)
    operator_only = {"operator_video": True, "operator_audio": True}
    both = {**operator_only, "customer_video": True, "customer_audio": True}
    frozen = {**both, "customer_video": False}
    written = [_play(recorder, clock, 2.0, operator_only)]
    for _ in range(18):
        written.append(_play(recorder, clock, 1.0, operator_only))
    # every second of the operator alone went out within the second after it
    assert all(w > 1000 for w in written[1:]), written
    _play(recorder, clock, 4.0, both)
    _play(recorder, clock, 5.0, frozen)
    _play(recorder, clock, 3.0, both)
    summary = await recorder.close()
    assert summary["error"] is None and summary["missing"] == []
    assert summary["started"]["operator_video"] < 0.1
    assert 19.9 <= summary["started"]["customer_video"] <= 20.1
    holes = {(h["stream"], round(h["from"]), round(h["to"])) for h in summary["holes"]}
    assert holes == {
        ("customer_video", 0, 20), ("customer_audio", 0, 20), ("customer_video", 24, 29)
    }, summary["holes"]  # fmt: skip

    result = ReadResult()
    plain = b"".join(open_segments(tmp_path / "r.vrec", key, result))
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    with av.open(io.BytesIO(plain), "r", format="matroska") as container:
        for packet in container.demux():
            if packet.dts is None:
                continue
            title = packet.stream.metadata["title"]
            first.setdefault(title, float(packet.pts * packet.time_base))
            counts[title] = counts.get(title, 0) + 1
    assert first["operator_audio"] < 0.1 and 19.9 <= first["customer_video"] <= 20.1
    assert counts == {k: v for k, v in summary["packets"].items()}, (counts, summary["packets"])


async def test_a_side_that_never_sends_is_marked_missing_and_the_other_plays(
    tmp_path: Path,
) -> None:
    """No customer media at all: the operator's side is recorded and plays, the summary
    marks the customer's streams missing, and playing the customer's side is a clear
    ``recording_unplayable`` (not a bare 500)."""
    from videoid.compliance.playback import NothingToPlay, playable
    from videoid.recordings.recorder import CallRecorder
    from videoid.storage.envelope import LocalMasterKey

    clock = _Clock()
    key = LocalMasterKey(bytes(32))
    recorder = CallRecorder(tmp_path / "r.vrec", "rec-none", key, created=1.0, now=clock)
    _play(recorder, clock, 15.0, {"operator_video": True, "operator_audio": True})
    summary = await recorder.close()
    assert summary["missing"] == ["customer_video", "customer_audio"]
    assert summary["started"]["customer_video"] is None and summary["error"] is None
    plain = b"".join(open_segments(tmp_path / "r.vrec", key, ReadResult()))
    webm = playable(plain, "operator")
    with av.open(io.BytesIO(webm), "r") as played:
        assert sum(1 for p in played.demux() if p.dts is not None) == 2 * 15 * 50
    with pytest.raises(NothingToPlay) as caught:
        playable(plain, "customer")
    assert caught.value.code == "recording_unplayable" and caught.value.status == 409


class _LateTrack(MediaStreamTrack):
    """A camera whose first picture comes ``delay`` seconds after the call starts."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, delay: float) -> None:
        super().__init__()
        self._source, self._delay = source, delay
        self._since: float | None = None
        self.first_at: float | None = None

    async def recv(self) -> Any:
        if self._since is None:
            self._since = time.monotonic()
        wait = self._since + self._delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.first_at is None:
            self.first_at = time.monotonic()
        return await self._source.recv()


async def test_a_call_whose_customer_video_starts_late_is_recorded_as_it_goes(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    """Issue 20.6 through the server: the customer's camera starts 6 s into the call.
    Meanwhile the recording is written out (the operator's side and the customer's
    sound); the customer's video is recorded from when it came, and the summary says
    when it started. When the disk then fails, the operator is told at once."""
    from aiortc.contrib.media import MediaPlayer

    server, invitation, operator = await _recorded_call(start_server, operator_video)
    player = MediaPlayer(str(customer_video), loop=True)
    late = _LateTrack(player.video, 6.0)
    customer = CustomerBot(invitation.url, late)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=40))
    cu_task = asyncio.create_task(customer.run(timeout_seconds=40))
    repo = server.services.repo
    recordings: list[dict[str, Any]] = []
    for _ in range(300):
        recordings = await repo.recordings(invitation.session_id)
        if recordings:
            break
        await asyncio.sleep(0.05)
    [recording] = recordings
    path = server.services.config.data_path / "recordings" / recording["file"]
    await asyncio.sleep(4.5)
    assert late.first_at is None  # no picture from the customer yet
    written_before_video = path.stat().st_size
    assert written_before_video > 10_000, written_before_video  # not held in memory
    # then the disk fails: the call goes on, and its operator is told at once
    media = server.services.center._media[invitation.session_id]
    assert media is not None and media.recorder is not None
    recorder = media.recorder
    for _ in range(400):
        if recorder.packets["customer_video"] > 20:
            break
        await asyncio.sleep(0.05)

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    recorder._writer.write = full  # type: ignore[method-assign]
    told = await operator.signaling.next("recording_failed", 5)
    assert told == {"session_id": invitation.session_id, "reason": "recording_failed"}
    # and a console loaded again mid-call learns it from the call's view
    assert (await operator.signaling.request("call_view"))["recording_failed"] is True
    await asyncio.wait_for(cu_task, 60)
    await asyncio.wait_for(op_task, 30)
    player.video.stop()

    [recording] = await repo.recordings(invitation.session_id)
    summary = recording["summary"]
    assert recording["status"] == "failed" and "No space left" in summary["error"], summary
    assert summary["missing"] == [], summary
    started = summary["started"]  # the sound from the start, the picture 6 s later
    assert started["customer_video"] - started["customer_audio"] > 4.5, started
    assert any(h["stream"] == "customer_video" and h["from"] == 0 for h in summary["holes"]), (
        summary["holes"]
    )
    assert summary["packets"]["customer_video"] > 20, summary["packets"]
