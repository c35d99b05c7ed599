"""A real call recorded through the server: both directions, audio and video, as the
packets arrived, encrypted as written; decrypted, it plays (R13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.recordings.stream_crypto import ReadResult, open_segments

from .conftest import PASSWORD, StartServer


async def test_a_call_is_recorded_both_ways(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server = await start_server(live={"workers": 0})
    await server.operator("olga")
    invitation = await server.invite()
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="rejected",
        watch_seconds=4.0, min_video_frames=5,
    )  # fmt: skip
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
