"""Benchmark of the live-call media path: N concurrent customer/operator pairs through one
server process, encoded forwarding against aiortc's re-encoding path, in one run.

The server runs in a subprocess pinned to one core and the load generator (this process)
to another. Each participant sends a pre-encoded 640x480 15 fps VP8 clip and Opus audio
(no encoding on the generator). Per N it prints: calls sustained, server CPU seconds per
call-second, video frames forwarded per second and lost, operator-accept to first video
frame on each side, latency from send to arrival through the server (the generator sends
and receives, so one clock measures both ends), server memory, and the generator's own
CPU (to show it was not the bottleneck). ``--soak`` runs calls that come and go and prints
the server's memory over time."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from ..bots.operator_bot import answer_checklist, login
from ..bots.signaling_client import SignalingClient
from .bench_peer import BenchPeer
from .clip import build_clip
from .serving import wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PHOTO = ROOT / "var" / "test-assets" / "face_recognition" / "obama.jpg"
PASSWORD = "bench password 1"
MAX_LOSS = 0.05
MAX_P95_MS = 1000.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pairs",
        default="1,2,4,8,12,16,20,24",
        help="comma-separated numbers of concurrent calls to try, in order",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per step")
    p.add_argument("--modes", default="encoded,reencode")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument(
        "--arrival-interval",
        type=float,
        default=0.25,
        help="seconds between customers joining the queue (0: all at once)",
    )
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first break")
    p.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="instead: run calls that come and go for this many seconds",
    )
    p.add_argument("--soak-pairs", type=int, default=4)
    p.add_argument("--photo", default=str(DEFAULT_PHOTO))
    p.add_argument("--json", help="also write the results to this file")


@dataclass
class Step:
    mode: str
    pairs: int
    sustained: int
    server_cpu_per_call_second: float
    frames_forwarded_per_second: float
    frames_lost_percent: float
    first_frame_operator_ms: tuple[float, float]
    first_frame_customer_ms: tuple[float, float]
    latency_ms: tuple[float, float]
    server_rss_mb: float
    generator_cpu_percent: float
    unidentified_frames: int
    window: tuple[float, float] = (0.0, 0.0)
    """The measured span (the generator's monotonic clock)."""

    @property
    def broken(self) -> bool:
        return (
            self.sustained < self.pairs
            or self.frames_lost_percent > MAX_LOSS * 100
            or self.latency_ms[1] > MAX_P95_MS
        )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


class Harness:
    """One server process and the generator's connections to it."""

    def __init__(
        self,
        mode: str,
        args: argparse.Namespace,
        clip: Any,
        env: dict[str, str] | None = None,
        on_operator: Any = None,
        before_queue: Any = None,
    ) -> None:
        self.mode = mode
        self.env = env or {}
        self.on_operator = on_operator
        """Called with each operator's SignalingClient (to listen to its events)."""
        self.before_queue = before_queue
        """Awaited with (server URL, invitation token) before a customer queues."""
        self.args = args
        self.clip = clip
        self.table = clip.index_by_hash()
        self.identify = "hash" if mode == "encoded" else "barcode"
        self.dir = Path(tempfile.mkdtemp(prefix=f"videoid-bench-{mode}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin_token = ""
        self.operator_tokens: list[str] = []

    async def start(self, operators: int) -> None:
        from ..config import load_config
        from ..db import Repository
        from ..operator_console.accounts import Accounts

        config = load_config(environ={}, overrides={"server": {"data_dir": str(self.dir)}})
        repo = await Repository.open(config.database_url)
        accounts = Accounts(repo, config.operators)
        await accounts.add("bench-admin", PASSWORD, "supervisor", time.time())
        for i in range(operators):
            await accounts.add(f"bench-op-{i}", PASSWORD, "operator", time.time())
        await repo.close()
        proc = self._spawn()
        await wait_until_healthy(self.url, proc, 30, self.dir / "server.log", 0.2)
        self.admin_token = await login(self.url, "bench-admin", PASSWORD)
        self.operator_tokens = [
            await login(self.url, f"bench-op-{i}", PASSWORD) for i in range(operators)
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the server process, pinned to its core, logging to the work directory."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        cpu = self.args.server_cpu
        with open(self.dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "videoid",
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(self.dir),
                    "--forwarding",
                    self.mode,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                # the bench's customers go straight to the queue (no onboarding steps)
                # and the live analysis is off unless asked for (bench live measures it)
                env={
                    **os.environ,
                    "VIDEOID_ONBOARDING_REQUIRED_STEPS": "",
                    "VIDEOID_LIVE_WORKERS": "0",
                    **self.env,
                },
                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            )
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def invite(self, http: aiohttp.ClientSession) -> str:
        async with http.post(
            f"{self.url}/api/invitations",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            json={"email": "bench@example.org", "phone": "+390000000000"},
        ) as r:
            body = await r.json()
            if r.status != 201:
                raise RuntimeError(f"invitation refused: {body}")
            return str(body["url"]).split("#", 1)[1]

    async def round(self, pairs: int, seconds: float) -> Step:
        server = psutil.Process(self.proc.pid)  # type: ignore[union-attr]
        me = psutil.Process()
        peers: dict[str, dict[str, BenchPeer]] = {}
        accepted_at: dict[str, float] = {}
        clients: list[SignalingClient] = []

        def link(session_id: str) -> None:
            both = peers[session_id]
            if "operator" in both and "customer" in both:
                both["operator"].arrivals.source = both["customer"].video
                both["customer"].arrivals.source = both["operator"].video

        async def operator_side(token: str) -> None:
            client = SignalingClient(self.url, "/operator")
            clients.append(client)
            if self.on_operator is not None:
                self.on_operator(client)
            await client.connect({"token": token})
            await client.next("hello", 10)
            await client.request("set_presence", {"status": "available"})
            offered = await client.next("assignment_offered", 60)
            session_id = offered["session_id"]
            accepted_at[session_id] = time.monotonic()
            await client.request("accept", {"session_id": session_id})
            await client.request("set_presence", {"status": "paused"})
            peer = peers.setdefault(session_id, {})["operator"] = BenchPeer(
                self.clip, self.identify, self.table
            )
            link(session_id)
            reply = await client.request(
                "webrtc_offer", {"type": "offer", "sdp": await peer.offer()}
            )
            await peer.accept_answer(reply["answer"]["sdp"])

        async def customer_side(token: str) -> None:
            client = SignalingClient(self.url, "/customer")
            clients.append(client)
            await client.connect({"token": token})
            session_id = (await client.next("session", 10))["session_id"]
            if self.before_queue is not None:
                await self.before_queue(self.url, token)
            await client.request("join_queue")
            await client.next("call_started", 60)
            peer = peers.setdefault(session_id, {})["customer"] = BenchPeer(
                self.clip, self.identify, self.table
            )
            link(session_id)
            reply = await client.request(
                "webrtc_offer", {"type": "offer", "sdp": await peer.offer()}
            )
            await peer.accept_answer(reply["answer"]["sdp"])

        async with aiohttp.ClientSession() as http:
            tokens = [await self.invite(http) for _ in range(pairs)]
        ops = [asyncio.create_task(operator_side(t)) for t in self.operator_tokens[:pairs]]
        await asyncio.sleep(0.5)  # operators first, then customers arrive one by one
        customers = []
        for token in tokens:
            customers.append(asyncio.create_task(customer_side(token)))
            await asyncio.sleep(self.args.arrival_interval)
        await asyncio.gather(*customers, *ops)
        sides = [p for both in peers.values() for p in both.values()]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(p.arrivals.first_at is None for p in sides):
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # settle

        cpu0, me0, t0 = _cpu(server), me.cpu_times(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, me1, t1 = _cpu(server), me.cpu_times(), time.monotonic()
        rss = server.memory_info().rss / 2**20
        span = t1 - t0
        cut = t1 - 1.0  # frames sent in the last second may still be on their way

        latencies: list[float] = []
        sent_total = received_total = sustained = unidentified = 0
        first_op: list[float] = []
        first_cust: list[float] = []
        for session_id, both in peers.items():
            ok = True
            for role, peer in both.items():
                arrivals = peer.arrivals
                source = arrivals.source
                sent = sum(1 for t in (source.sent_times if source else []) if t0 <= t < cut)
                got = [(s, a) for s, a in arrivals.frames if t0 <= s < cut]
                sent_total += sent
                received_total += len(got)
                unidentified += arrivals.unidentified
                latencies.extend((a - s) * 1000 for s, a in got)
                if sent == 0 or len(got) < sent * (1 - MAX_LOSS):
                    ok = False
                if arrivals.first_at is not None and session_id in accepted_at:
                    (first_op if role == "operator" else first_cust).append(
                        (arrivals.first_at - accepted_at[session_id]) * 1000
                    )
            sustained += ok and len(both) == 2
        received_in_span = sum(sum(1 for _, a in p.arrivals.frames if t0 <= a < t1) for p in sides)

        step = Step(
            mode=self.mode,
            pairs=pairs,
            sustained=sustained,
            server_cpu_per_call_second=(cpu1 - cpu0) / (pairs * span),
            frames_forwarded_per_second=received_in_span / span,
            frames_lost_percent=100 * (1 - received_total / sent_total) if sent_total else 100,
            first_frame_operator_ms=(pct(first_op, 0.5), pct(first_op, 0.95)),
            first_frame_customer_ms=(pct(first_cust, 0.5), pct(first_cust, 0.95)),
            latency_ms=(pct(latencies, 0.5), pct(latencies, 0.95)),
            server_rss_mb=rss,
            generator_cpu_percent=100 * ((me1.user + me1.system) - (me0.user + me0.system)) / span,
            unidentified_frames=unidentified,
            window=(t0, t1),
        )
        # end the calls as an operator would, and leave
        for session_id in peers:
            for client in clients:
                if client.namespace == "/operator" and client.sio.connected:
                    try:
                        view = await client.request("call_view", None, 5)
                        await answer_checklist(
                            client, view["checklist"]["items"], otp="failed", others="failed"
                        )
                        await client.request(
                            "decide",
                            {
                                "session_id": session_id,
                                "outcome": "rejected",  # no checklist needed
                                "reason_code": "customer_withdrew",
                            },
                            5,
                        )
                        break
                    except Exception:
                        continue
        await asyncio.gather(*(p.close() for p in sides), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await asyncio.sleep(1.0)
        return step


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of the server and its worker processes (the analysis pool)."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


HEADER = (
    f"{'mode':<9}{'calls':>6}{'ok':>4}{'srv cpu s/call-s':>17}{'fwd fps':>9}"
    f"{'lost %':>8}{'accept→1st op p50/p95':>23}{'cust p50/p95':>14}"
    f"{'latency p50/p95 ms':>20}{'srv MB':>8}{'gen cpu%':>9}"
)


def _pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.0f}/{values[1]:.0f}"


def row(s: Step) -> str:
    f = _pair
    return (
        f"{s.mode:<9}{s.pairs:>6}{s.sustained:>4}{s.server_cpu_per_call_second:>17.3f}"
        f"{s.frames_forwarded_per_second:>9.0f}{s.frames_lost_percent:>8.2f}"
        f"{f(s.first_frame_operator_ms):>23}{f(s.first_frame_customer_ms):>14}"
        f"{f(s.latency_ms):>20}{s.server_rss_mb:>8.0f}{s.generator_cpu_percent:>9.0f}"
        + ("  ← broke" if s.broken else "")
    )


async def run(args: argparse.Namespace) -> list[Step]:
    clip = build_clip(Path(args.photo), ROOT / "var" / "bench")
    counts = [int(n) for n in args.pairs.split(",")]
    steps: list[Step] = []
    print(
        f"server on core {args.server_cpu}, generator on core {args.load_cpu}; "
        f"640x480 VP8 15 fps + Opus each way; customers arrive {args.arrival_interval} s "
        f"apart; {args.seconds:.0f} s measured per step; "
        f"a step breaks at a lost call, >{MAX_LOSS:.0%} frames lost or p95 > {MAX_P95_MS:.0f} ms",
        flush=True,
    )
    print(HEADER, flush=True)
    for mode in args.modes.split(","):
        harness = Harness(mode, args, clip)
        try:
            await harness.start(max(counts))
            for n in counts:
                step = await harness.round(n, args.seconds)
                steps.append(step)
                print(row(step), flush=True)
                if step.broken and not args.keep_going:
                    break
        finally:
            harness.stop()
    encoded = {s.pairs: s for s in steps if s.mode == "encoded"}
    reencode = {s.pairs: s for s in steps if s.mode == "reencode"}
    common = sorted(set(encoded) & set(reencode))
    if common:
        print("\nserver CPU per call-second, re-encoding / encoded forwarding:")
        for n in common:
            ratio = reencode[n].server_cpu_per_call_second / encoded[n].server_cpu_per_call_second
            print(
                f"  {n:>3} calls: {reencode[n].server_cpu_per_call_second:.3f} / "
                f"{encoded[n].server_cpu_per_call_second:.3f} = {ratio:.1f}x"
            )
    for mode, by_n in (("encoded", encoded), ("reencode", reencode)):
        good = [n for n, s in by_n.items() if not s.broken]
        if by_n:
            print(f"{mode}: most calls sustained on one server core: {max(good) if good else 0}")
    return steps


async def soak(args: argparse.Namespace) -> None:
    clip = build_clip(Path(args.photo), ROOT / "var" / "bench")
    mode = args.modes.split(",")[0]
    harness = Harness(mode, args, clip)
    samples: list[tuple[float, float]] = []
    try:
        await harness.start(args.soak_pairs)
        start = time.monotonic()
        proc = psutil.Process(harness.proc.pid)  # type: ignore[union-attr]
        calls = 0
        print(
            f"soak: {mode}, {args.soak_pairs} calls at a time, each 15-45 s, for {args.soak:.0f} s",
            flush=True,
        )
        while time.monotonic() - start < args.soak:
            step = await harness.round(args.soak_pairs, random.uniform(15, 45))
            calls += step.pairs
            rss = proc.memory_info().rss / 2**20
            samples.append((time.monotonic() - start, rss))
            print(
                f"  t={samples[-1][0]:6.0f} s  calls so far {calls:5d}  server RSS "
                f"{rss:7.1f} MB  (lost {step.frames_lost_percent:.2f} %)",
                flush=True,
            )
    finally:
        harness.stop()
    later = samples[len(samples) // 2 :]
    if len(later) >= 2:
        slope = statistics.linear_regression([t for t, _ in later], [m for _, m in later]).slope
        print(
            f"memory trend over the second half: {slope * 3600:+.1f} MB/hour "
            f"(first {samples[0][1]:.1f} MB, last {samples[-1][1]:.1f} MB)"
        )


def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.load_cpu})
    if args.soak:
        asyncio.run(soak(args))
        return
    steps = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in steps], indent=1))
