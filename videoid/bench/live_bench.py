"""Benchmark of the live analysis: what analysing each customer's stream costs, and how
fast its signals reach the operator, as calls are added to one server process.

The forwarding benchmark's harness runs the server (with its analysis workers, all
pinned to one core) twice in one run: analysis off, then on. Each call's customer sends
a pre-encoded 640x480 15 fps VP8 clip of a real face, after uploading a selfie of the
same man (with analysis on), so that the live face is also compared with it every few
seconds (in the descriptor's own worker); the operators (this process) listen to the
``signals`` events. Per N it prints: server CPU per call-second with and without
analysis (their difference is the analysis' cost), the delay from a frame's arrival at
the server to its signals reaching the operator (p50/p95: one machine, one clock), the
face mesh's time per frame in the worker (p95: wall time, which includes waiting for the
shared core, and CPU time), the event loop's lag (p99), and the
forwarding latency and loss with analysis on and off (the live call's goals: no loss,
p95 well under a second). Then the same frames through face_recognition's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from ..bots.onboarding_client import OnboardingClient
from ..bots.signaling_client import SignalingClient
from .clip import build_clip
from .forwarding import DEFAULT_PHOTO, ROOT, Harness, Step, pct

DELAY_LIMIT_MS = 1000.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", default="1,2,4,6,8,12", help="numbers of concurrent calls")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per step")
    p.add_argument("--rate", type=float, default=5.0, help="frames analysed a second per call")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--arrival-interval", type=float, default=0.25)
    p.add_argument("--frames", type=int, default=40, help="frames for the library comparison")
    p.add_argument("--photo", default=str(DEFAULT_PHOTO))
    p.add_argument(
        "--selfie",
        default=str(DEFAULT_PHOTO.with_name("obama3.jpg")),
        help="each customer's selfie, which the live face is compared with",
    )
    p.add_argument("--keep-going", action="store_true")


@dataclass
class Listener:
    """What the operators received: (arrival, delay ms, worker's liveness ms and CPU ms)."""

    samples: list[tuple[float, float, float, float]] = field(default_factory=list)

    def attach(self, client: SignalingClient) -> None:
        async def on_signals(payload: dict[str, Any]) -> None:
            now = time.time()
            self.samples.append(
                (
                    time.monotonic(),
                    (now - float(payload["frame_at"])) * 1000,
                    float(payload.get("liveness_ms", 0.0)),
                    float(payload.get("liveness_cpu_ms", 0.0)),
                )
            )

        client.on("signals", on_signals)

    def within(self, window: tuple[float, float]) -> list[tuple[float, float, float]]:
        return [(d, w, c) for at, d, w, c in self.samples if window[0] <= at <= window[1]]


@dataclass
class Row:
    pairs: int
    off: Step | None
    on: Step
    delays: list[float]
    liveness: list[float]
    liveness_cpu: list[float]
    lag: dict[str, Any]
    signals_per_call_second: float

    @property
    def broken(self) -> bool:
        return self.on.broken or not self.delays or pct(self.delays, 0.95) > DELAY_LIMIT_MS


async def _lag(url: str, seconds: float) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/health", params={"lag_seconds": str(seconds)}) as r,
    ):
        lag: dict[str, Any] = (await r.json())["loop_lag_ms"]
        return lag


async def measure(args: argparse.Namespace) -> list[Row]:
    clip = build_clip(Path(args.photo), ROOT / "var" / "bench")
    counts = [int(n) for n in args.pairs.split(",")]
    rate = str(args.rate)
    base_env = {"VIDEOID_LIVE_ANALYSIS_FPS": rate}
    off_steps: dict[int, Step] = {}
    rows: list[Row] = []
    harness = Harness("encoded", args, clip, env={**base_env, "VIDEOID_LIVE_WORKERS": "0"})
    try:
        await harness.start(max(counts))
        for n in counts:
            off_steps[n] = await harness.round(n, args.seconds)
    finally:
        harness.stop()
    listener = Listener()
    selfie = await asyncio.to_thread(Path(args.selfie).read_bytes)

    async def take_selfie(url: str, token: str) -> None:
        # a selfie gives the live face something to be compared with (every 2 s)
        async with OnboardingClient(url, token) as client:
            reply = await client.selfie(selfie)
            if not reply.get("accepted"):
                raise RuntimeError(f"the bench selfie was refused: {reply}")

    harness = Harness(
        "encoded",
        args,
        clip,
        env={
            **base_env,
            "VIDEOID_LIVE_WORKERS": "1",
            "VIDEOID_ONBOARDING_REQUIRED_STEPS": "selfie_taken",
        },
        on_operator=listener.attach,
        before_queue=take_selfie,
    )
    try:
        await harness.start(max(counts))
        await asyncio.sleep(8)  # the workers load their models at start: not measured
        for n in counts:
            step = await harness.round(n, args.seconds)
            lag = await _lag(harness.url, args.seconds)
            got = listener.within(step.window)
            span = step.window[1] - step.window[0]
            row = Row(
                n,
                off_steps.get(n),
                step,
                [d for d, _, _ in got],
                [w for _, w, _ in got],
                [c for _, _, c in got],
                lag,
                len(got) / (n * span) if span else 0.0,
            )
            rows.append(row)
            print(format_row(row), flush=True)
            if row.broken and not args.keep_going:
                break
    finally:
        harness.stop()
    return rows


HEADER = (
    f"{'calls':>5}{'ok':>4}{'cpu off':>9}{'cpu on':>8}{'analysis':>10}{'signals/s':>10}"
    f"{'delay p50/p95 ms':>18}{'mesh p95 ms/cpu':>16}{'loop lag p99':>13}"
    f"{'fwd p50/p95 ms on':>19}{'off':>10}{'lost %':>8}"
)


def format_row(r: Row) -> str:
    off = r.off.server_cpu_per_call_second if r.off else float("nan")
    on = r.on.server_cpu_per_call_second
    fwd_off = f"{r.off.latency_ms[0]:.0f}/{r.off.latency_ms[1]:.0f}" if r.off else "-"
    return (
        f"{r.pairs:>5}{r.on.sustained:>4}{off:>9.3f}{on:>8.3f}{on - off:>10.3f}"
        f"{r.signals_per_call_second:>10.1f}"
        f"{pct(r.delays, 0.5):>9.0f}/{pct(r.delays, 0.95):<8.0f}"
        f"{pct(r.liveness, 0.95):>10.1f}/{pct(r.liveness_cpu, 0.95):<5.1f}"
        f"{r.lag.get('p99', float('nan')):>13.1f}"
        f"{r.on.latency_ms[0]:>10.0f}/{r.on.latency_ms[1]:<8.0f}{fwd_off:>10}"
        f"{r.on.frames_lost_percent:>8.2f}" + ("  ← broke" if r.broken else "")
    )


def compare_libraries(photo: Path, frames: int) -> None:
    """Our worker's analysis against face_recognition's defaults, on the same frames."""
    import face_recognition

    from ..liveness.frame_analysis import analyse_frame, face_descriptor

    y4m = ROOT / "var" / "bench" / f"{photo.stem}-10s.y4m"
    images: list[Any] = []
    with av.open(str(y4m)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 3 == 0:
                images.append(frame.to_ndarray(format="rgb24"))
            if len(images) >= frames:
                break
    first = analyse_frame(images[0], 0.0)  # load the models first
    face_descriptor(images[0], first["box"])
    face_recognition.face_encodings(images[0])

    def timed(fn: Any) -> list[float]:
        out = []
        for image in images:
            t = time.perf_counter()
            fn(image)
            out.append((time.perf_counter() - t) * 1000)
        return out

    ours = timed(lambda im: analyse_frame(im, 0.0))

    def ours_with_descriptor(im: Any) -> Any:
        result = analyse_frame(im, 0.0)
        return face_descriptor(im, result["box"]) if "box" in result else None

    ours_match = timed(ours_with_descriptor)

    def fr_liveness(im: Any) -> Any:
        locations = face_recognition.face_locations(im)  # HOG, one upsampling: the default
        return face_recognition.face_landmarks(im, locations)  # 68 points: eyes, pose

    theirs = timed(fr_liveness)
    theirs_match = timed(face_recognition.face_encodings)
    print(f"\nper frame on this core ({len(images)} frames of the same clip), p50/p95 ms:")
    for name, a, b in (
        ("landmarks for liveness", ours, theirs),
        ("landmarks + face descriptor", ours_match, theirs_match),
    ):
        ratio = float(np.median(b)) / float(np.median(a))
        print(
            f"  {name:<28} ours {pct(a, 0.5):6.1f}/{pct(a, 0.95):6.1f}   "
            f"face_recognition defaults {pct(b, 0.5):6.1f}/{pct(b, 0.95):6.1f}   "
            f"{ratio:.1f}x faster"
        )


def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.load_cpu})
    print(
        f"server and its analysis worker on core {args.server_cpu}, generator on core "
        f"{args.load_cpu}; 640x480 VP8 15 fps each way; {args.rate:g} frames a second "
        f"analysed per call; {args.seconds:.0f} s measured per step; analysis off, then "
        f"on, in one run; a step breaks when the signals' p95 delay passes "
        f"{DELAY_LIMIT_MS:.0f} ms or a call fails",
        flush=True,
    )
    print(HEADER, flush=True)
    rows = asyncio.run(measure(args))
    good = [r.pairs for r in rows if not r.broken]
    print(
        f"calls one process sustains with signals under {DELAY_LIMIT_MS:.0f} ms p95: "
        f"{max(good) if good else 0}"
    )
    os.sched_setaffinity(0, {args.server_cpu})
    compare_libraries(Path(args.photo), args.frames)
