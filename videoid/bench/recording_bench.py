"""Benchmark of call recording (issue 5's goals), in one run:

1. CPU per call-second of recording, for 1, 4, 8 concurrent calls: our recorder (the
   encoded packets passed through into Matroska, encrypted, fsynced once a second)
   fed both directions of each call (two 640x480 15 fps VP8 videos, two Opus streams)
   at real time; against aiortc's MediaRecorder (which re-encodes the decoded pictures
   and sound it is given, one file per side), fed a fixed length of media as fast as
   it takes it (it cannot keep real time on one core; its "x real time" says how far
   from it it is). Both in this process on one core; the feeding is measured alone and
   subtracted. Also the event loop's lag meanwhile: MediaRecorder encodes on the loop.
2. Forwarding latency (send to arrival through a real server, as ``bench forwarding``
   measures it) with recording on and off, for the same numbers of calls.
3. The recording cipher's throughput on one core (STREAM over AES-256-GCM).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..loop_monitor import LoopMonitor
from ..recordings.recorder import CallRecorder
from ..recordings.stream_crypto import ReadResult, SegmentWriter, open_segments
from ..storage.envelope import LocalMasterKey
from .clip import FPS, Clip, build_clip
from .forwarding import DEFAULT_PHOTO, ROOT, Harness

GOAL_CORE_PER_STREAM = 0.02
GOAL_LATENCY_INCREASE = 0.10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", default="1,4,8", help="numbers of concurrent calls")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step")
    p.add_argument(
        "--mediarecorder-format", default="webm", help="MediaRecorder's container: webm or mp4"
    )
    p.add_argument(
        "--mediarecorder-seconds",
        type=float,
        default=2.0,
        help="seconds of each call MediaRecorder re-encodes (as fast as it can)",
    )
    p.add_argument("--skip-forwarding", action="store_true", help="skip part 2")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--photo", default=str(DEFAULT_PHOTO))
    p.add_argument("--json", help="also write the results to this file")


# -- part 1: what recording costs ---------------------------------------------------


async def _paced(
    calls: int, seconds: float, push: Callable[[int, str, bytes, bool], None], clip: Clip
) -> None:
    """Feed ``calls`` calls' four streams at real time: audio every 20 ms, video at
    15 fps, both sides."""
    start = time.monotonic()
    tick = frame = 0
    while True:
        at = start + tick * 0.02
        wait = at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if at - start >= seconds:
            return
        audio = clip.audio[tick % len(clip.audio)]
        for call in range(calls):
            push(call, "customer_audio", audio, True)
            push(call, "operator_audio", audio, True)
        if frame / FPS <= tick * 0.02:
            data = clip.video[frame % len(clip.video)]
            key = frame % len(clip.video) == 0
            for call in range(calls):
                push(call, "customer_video", data, key)
                push(call, "operator_video", data, key)
            frame += 1
        tick += 1


async def _measure(work: Callable[[], Any]) -> tuple[float, dict[str, Any]]:
    """CPU seconds (all threads) of ``work``, and the loop's lag meanwhile."""
    monitor = LoopMonitor()
    monitor.start()
    cpu0, t0 = time.process_time(), time.monotonic()
    await work()
    cpu1, t1 = time.process_time(), time.monotonic()
    lag = monitor.stats(t1 - t0)
    await monitor.close()
    return cpu1 - cpu0, lag


async def passthrough(calls: int, seconds: float, clip: Clip, directory: Path) -> dict[str, Any]:
    key = LocalMasterKey(os.urandom(32))

    async def feed_only() -> None:
        await _paced(calls, seconds, lambda *a: None, clip)

    base_cpu, _ = await _measure(feed_only)
    recorders = [
        CallRecorder(directory / f"p{calls}-{i}.vrec", f"bench-{calls}-{i}", key, created=0.0)
        for i in range(calls)
    ]

    async def record() -> None:
        for r in recorders:
            r.start()
        await _paced(calls, seconds, lambda c, n, d, k: recorders[c].push(n, d, k), clip)
        for r in recorders:
            await r.close()

    cpu, lag = await _measure(record)
    written = sum(r.path.stat().st_size for r in recorders)
    errors = [r.error for r in recorders if r.error]
    return {
        "calls": calls,
        "cpu_per_call_second": max(0.0, cpu - base_cpu) / (calls * seconds),
        "media_seconds_per_call": seconds,
        "loop_lag_p99_ms": lag.get("p99"),
        "mb_written": written / 2**20,
        "errors": errors,
    }


def _decoded(clip: Clip) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
    video = av.CodecContext.create("vp8", "r")
    pictures = [f for data in clip.video for f in video.decode(av.Packet(data))]
    audio = av.CodecContext.create("opus", "r")
    sounds = [f for data in clip.audio for f in audio.decode(av.Packet(data))]
    return pictures, sounds


class _Frames(MediaStreamTrack):
    """``seconds`` of decoded frames (as the server would have them after decoding),
    as fast as the consumer takes them; then the track ends."""

    def __init__(self, kind: str, frames: list[Any], interval: float, rate: int, seconds: float):
        super().__init__()
        self.kind = kind
        self._frames, self._interval, self._rate = frames, interval, rate
        self._count = round(seconds / interval)
        self._n = 0

    async def recv(self) -> Any:
        if self._n >= self._count:
            self.stop()
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(0)  # let the others run: the loop is shared
        frame = self._frames[self._n % len(self._frames)]
        frame.pts = round(self._n * self._interval * self._rate)
        frame.time_base = fractions.Fraction(1, self._rate)
        self._n += 1
        return frame


async def mediarecorder(
    calls: int,
    seconds: float,
    pictures: list[av.VideoFrame],
    sounds: list[av.AudioFrame],
    directory: Path,
    fmt: str,
) -> dict[str, Any]:
    """``seconds`` of both sides of ``calls`` calls, re-encoded by MediaRecorder as fast
    as it can on one core: its CPU per call-second does not depend on pacing."""

    def tracks() -> list[_Frames]:
        return [
            _Frames("video", pictures, 1 / FPS, 90000, seconds),
            _Frames("audio", sounds, 0.02, 48000, seconds),
        ]

    async def feed_only() -> None:
        async def drain(track: _Frames) -> None:
            try:
                while True:
                    await track.recv()
            except MediaStreamError:
                pass

        await asyncio.gather(*(drain(t) for _ in range(2 * calls) for t in tracks()))

    base_cpu, _ = await _measure(feed_only)
    sides = [tracks() for _ in range(2 * calls)]
    recorders = []
    for i, side in enumerate(sides):
        recorder = MediaRecorder(str(directory / f"m{calls}-{i}.{fmt}"), format=fmt)
        for track in side:
            recorder.addTrack(track)
        recorders.append(recorder)

    async def record() -> None:
        for r in recorders:
            await r.start()
        while any(t.readyState == "live" for side in sides for t in side):
            await asyncio.sleep(0.05)
        for r in recorders:
            await r.stop()

    started = time.monotonic()
    cpu, lag = await _measure(record)
    wall = time.monotonic() - started
    return {
        "calls": calls,
        "cpu_per_call_second": max(0.0, cpu - base_cpu) / (calls * seconds),
        "media_seconds_per_call": seconds,
        "loop_lag_p99_ms": lag.get("p99"),
        "real_time_factor": seconds / wall,
    }


def _clear(directory: Path) -> None:
    for f in directory.iterdir():
        f.unlink()


# -- part 3: the cipher ---------------------------------------------------------------


def cipher_throughput(directory: Path, megabytes: int = 256) -> dict[str, float]:
    key = LocalMasterKey(os.urandom(32))
    chunk = os.urandom(1 << 20)
    path = directory / "cipher.vrec"
    writer = SegmentWriter(path, "bench-cipher", key, created=0.0, durable=False)
    cpu0 = time.process_time()
    for _ in range(megabytes):
        writer.write(chunk)
    writer.close()
    enc = megabytes / (time.process_time() - cpu0)
    result = ReadResult()
    cpu0 = time.process_time()
    for _ in open_segments(path, key, result):
        pass
    dec = megabytes / (time.process_time() - cpu0)
    path.unlink()
    return {"encrypt_mb_per_s": enc, "decrypt_mb_per_s": dec}


# -- part 2: forwarding latency with recording on and off -----------------------------


async def forwarding_latency(
    args: argparse.Namespace, counts: list[int]
) -> dict[int, dict[str, Any]]:
    clip = build_clip(Path(args.photo), ROOT / "var" / "bench")
    out: dict[int, dict[str, Any]] = {}
    fwd_args = argparse.Namespace(
        server_cpu=args.server_cpu, load_cpu=args.load_cpu, arrival_interval=0.25
    )
    for label, enabled in (("off", "false"), ("on", "true")):
        harness = Harness("encoded", fwd_args, clip, env={"VIDEOID_RECORDING_ENABLED": enabled})
        try:
            await harness.start(max(counts))
            for n in counts:
                step = await harness.round(n, args.seconds)
                out.setdefault(n, {})[label] = {
                    "latency_ms": step.latency_ms,
                    "sustained": step.sustained,
                    "server_cpu_per_call_second": step.server_cpu_per_call_second,
                    "lost_percent": step.frames_lost_percent,
                }
                print(
                    f"  recording {label:<3} {n:>2} calls: latency p50/p95 "
                    f"{step.latency_ms[0]:.0f}/{step.latency_ms[1]:.0f} ms, server CPU "
                    f"{step.server_cpu_per_call_second:.3f} s/call-s, lost "
                    f"{step.frames_lost_percent:.2f} %",
                    flush=True,
                )
        finally:
            harness.stop()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(n) for n in args.calls.split(",")]
    clip = build_clip(Path(args.photo), ROOT / "var" / "bench")
    pictures, sounds = _decoded(clip)
    results: dict[str, Any] = {"passthrough": [], "mediarecorder": []}
    print(
        f"both directions of each call: 2 x 640x480 VP8 15 fps + 2 x Opus, real time, "
        f"{args.seconds:.0f} s per step; this process on core {args.load_cpu}",
        flush=True,
    )
    print(
        f"{'calls':>5}{'pass-through cpu/call-s':>25}{'per stream':>12}{'loop p99 ms':>13}"
        f"{'MediaRecorder (' + args.mediarecorder_format + ') cpu/call-s':>36}"
        f"{'x real time':>12}{'loop p99 ms':>13}{'ratio':>8}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="videoid-bench-rec-") as tmp:
        directory = Path(tmp)
        for n in counts:
            ours = await passthrough(n, args.seconds, clip, directory)
            theirs = await mediarecorder(
                n,
                args.mediarecorder_seconds,
                pictures,
                sounds,
                directory,
                args.mediarecorder_format,
            )
            results["passthrough"].append(ours)
            results["mediarecorder"].append(theirs)
            per_stream = ours["cpu_per_call_second"] / 2  # a stream: one side's video + audio
            ratio = theirs["cpu_per_call_second"] / max(ours["cpu_per_call_second"], 1e-9)
            print(
                f"{n:>5}{ours['cpu_per_call_second']:>25.4f}{per_stream:>12.4f}"
                f"{ours['loop_lag_p99_ms']:>13}{theirs['cpu_per_call_second']:>36.3f}"
                f"{theirs['real_time_factor']:>12.2f}{theirs['loop_lag_p99_ms']:>13}"
                f"{ratio:>7.0f}x",
                flush=True,
            )
            _clear(directory)
        cipher = cipher_throughput(directory)
    results["cipher"] = cipher
    worst = max(r["cpu_per_call_second"] / 2 for r in results["passthrough"])
    print(
        f"\nrecording cipher on one core: encrypt {cipher['encrypt_mb_per_s']:.0f} MB/s, "
        f"decrypt {cipher['decrypt_mb_per_s']:.0f} MB/s",
        flush=True,
    )
    print(
        f"goal: under {GOAL_CORE_PER_STREAM:.0%} of a core per recorded stream (one side's "
        f"video and audio), encryption included: worst {worst:.2%} — "
        f"{'met' if worst < GOAL_CORE_PER_STREAM else 'NOT met'}",
        flush=True,
    )
    if not args.skip_forwarding:
        print("\nforwarding latency through a server (its own core), recording off then on:")
        fwd = await forwarding_latency(args, counts)
        results["forwarding"] = fwd
        for calls, both in fwd.items():
            if "on" in both and "off" in both:
                off, on = both["off"]["latency_ms"][1], both["on"]["latency_ms"][1]
                increase = (on - off) / off if off else float("nan")
                print(
                    f"  {calls:>2} calls: p95 {off:.1f} ms off, {on:.1f} ms on: {increase:+.1%} "
                    f"({'within' if increase < GOAL_LATENCY_INCREASE else 'OVER'} the "
                    f"{GOAL_LATENCY_INCREASE:.0%} goal)",
                    flush=True,
                )
    return results


def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.load_cpu})
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
