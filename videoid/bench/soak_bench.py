"""``videoid bench soak``: does the server's memory stay flat while customers come and
go through the whole flow?

``--pairs`` customers at a time, each replaced by a new one when done, for
``--minutes``: an invitation (by a supervisor, over HTTP), every onboarding step
(consent, both sides of a synthetic identity card, the data read from it confirmed, a
selfie, the connectivity and A/V tests), the queue, a call with real aiortc media both
ways (the customer's a face, analysed live, and the call recorded), the operator's
checklist (snapshots, the SMS code read back in the chat) and a decision. The endings
cycle: approved, approved, rejected, and a customer who hangs up mid-call and does not
come back (the call ends when the reconnect window, 10 s here, runs out).

The server is a ``videoid serve`` process of its own in a temporary data directory, not
an application in this process: its resident memory (``VmRSS``) is then the server's
alone, not mixed with the bots', their media and their decoders, and it runs as in
production (its own allocator settings, its own garbage collector's history). It is
started through :mod:`.traced_serve`, which adds only a SIGUSR2 handler: at the end of
the warm-up and at the end the bench asks it what its memory holds (malloc's bytes in
use and held free, Python's allocator, live objects by type, the cyclic garbage a full
collection finds) and prints what changed; ``--trace`` adds tracemalloc (slower, and
the RSS figures are then not the server's own).

Every ``--sample-seconds`` it reads the server's ``VmRSS`` and its analysis workers'
(child processes, apart). At the end it prints the calls done, the server's RSS before
the load, at the end of the warm-up (the first third), at the end, its peak and after a
full collection, the least-squares slope in MB/hour after the warm-up and over the
second half (the goal: under 5 MB/hour), and the workers'. The RSS rises and falls with
the garbage collector's full passes (each frees the calls ended since the last): run it
long enough for several of them.

The bots send a pre-encoded clip of a real face (no encoding in this process) so that
the two cores the bench shares with the server go to the server."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import logging
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
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from ..bots.customer_bot import CustomerBot, OnboardingInput
from ..bots.media_client import ClientPeer
from ..bots.operator_bot import Authenticator, OperatorBot, login
from ..bots.signaling_client import ProtocolError
from .bench_peer import ClipVideoTrack
from .clip import Clip, build_clip
from .documents import make_document, portrait_from, render
from .forwarding import DEFAULT_PHOTO, ROOT
from .serving import wait_until_healthy

PASSWORD = "soak bench password"
ENDINGS = ("approved", "approved", "rejected", "hangup")
RECONNECT_SECONDS = 10
GOAL_MB_PER_HOUR = 5.0
STEP_SECONDS = 120.0
"""How long a bot waits at any one step before the customer is counted failed."""
DRAIN_SECONDS = 90.0
"""After the time is up, how long the customers under way have to finish."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=30.0, help="how long customers keep coming")
    p.add_argument("--pairs", type=int, default=2, help="customers (and operators) at a time")
    p.add_argument("--sample-seconds", type=float, default=5.0)
    p.add_argument("--watch-seconds", type=float, default=2.0, help="before the checklist")
    p.add_argument("--photo", default=str(DEFAULT_PHOTO), help="the customer's face")
    p.add_argument(
        "--selfie", default=str(DEFAULT_PHOTO.with_name("obama3.jpg")), help="their selfie"
    )
    p.add_argument(
        "--cache-dir", default=str(ROOT / "var" / "bench"), help="where the clip is cached"
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="tracemalloc in the server: print what grew after the warm-up (slows it)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the server (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    p.add_argument(
        "--quiet-every",
        type=float,
        default=5.0,
        help="minutes between quiet points after the warm-up: no new customer, those under "
        "way finish, the server collects its garbage and trims malloc, its RSS is sampled",
    )
    p.add_argument("--csv", help="also write every sample here (seconds, server MB, workers MB)")
    p.add_argument("--keep", action="store_true", help="keep the data directory and its log")


def main(args: argparse.Namespace) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the database made here
    work = Path(tempfile.mkdtemp(prefix="videoid-soak-"))
    try:
        asyncio.run(_run(args, work))
    finally:
        if args.keep:
            print(f"data directory and server log kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Sample:
    at: float
    """Seconds since the load started (negative: before)."""
    server_mb: float
    server_anon_mb: float
    """Of it, anonymous memory (the heaps): file pages (code) come and go with the
    page cache, these only with what the server allocates."""
    workers_mb: dict[int, float]


@dataclass
class Tally:
    done: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    """By where it failed and the error's code."""
    retried: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        ok = sum(self.done.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.done.items()))
        bad = sum(self.failed.values())
        again = ", ".join(f"{k} {v}" for k, v in sorted(self.retried.items()))
        return f"{ok} customers done ({parts or 'none'}), {bad} failed" + (
            f" (retried: {again})" if again else ""
        )


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A resident memory figure of the process from ``/proc/<pid>/status`` (``VmRSS``,
    ``RssAnon``), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_map(pid: int) -> dict[str, float]:
    """Where the process's resident memory is (MB), from ``/proc/<pid>/smaps``: the
    ``[heap]`` (the main malloc arena), other anonymous mappings (thread arenas, large
    allocations, libraries' own pools), files (code, mapped data); and its threads,
    each of which may get a malloc arena of its own."""
    out = {"heap": 0.0, "anonymous": 0.0, "files": 0.0, "anonymous_maps_over_1mb": 0.0}
    name = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(maxsplit=6)
                if "-" in first[0] and len(first) >= 5 and ":" in first[3]:
                    name = first[5].strip() if len(first) > 5 else ""
                elif first[0] == "Rss:":
                    mb = int(first[1]) / 1024
                    kind = (
                        "heap"
                        if name == "[heap]"
                        else "files"
                        if name.startswith("/")
                        else ("anonymous")
                    )
                    out[kind] += mb
                    if kind == "anonymous" and mb > 1:
                        out["anonymous_maps_over_1mb"] += 1
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    out["threads"] = float(line.split()[1])
    except OSError:
        pass
    return out


def sample(pid: int, at: float) -> Sample:
    try:
        children = [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        children = []
    return Sample(at, rss_mb(pid), rss_mb(pid, "RssAnon"), {c: rss_mb(c) for c in children})


def slope_mb_per_hour(samples: list[Sample], anonymous: bool = False) -> float:
    """Least squares over the samples, in MB/hour."""
    if len(samples) < 3:
        return float("nan")
    mbs = [s.server_anon_mb if anonymous else s.server_mb for s in samples]
    return statistics.linear_regression([s.at for s in samples], mbs).slope * 3600


class Server:
    """The ``videoid serve`` process, its accounts made before it starts."""

    def __init__(
        self, work: Path, pairs: int, trace: bool, env: dict[str, str] | None = None
    ) -> None:
        self.dir = work / "data"
        self.env = env or {}
        self.pairs = pairs
        self.trace = trace
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin_token = ""

    async def start(self, authenticator: Authenticator) -> None:
        from ..config import load_config
        from ..db import Repository
        from ..operator_console.accounts import Accounts

        config = load_config(environ={}, overrides={"server": {"data_dir": str(self.dir)}})
        repo = await Repository.open(config.database_url)
        accounts = Accounts(repo, config.operators)
        try:
            await accounts.add("soak-admin", PASSWORD, "supervisor", time.time())
            for i in range(self.pairs):
                await accounts.add(f"soak-op-{i}", PASSWORD, "operator", time.time())
        finally:
            await accounts.close()
            await repo.close()
        proc = self._spawn()
        # the first start makes the CA in the token; traced, every import is slow
        await wait_until_healthy(self.url, proc, 600 if self.trace else 90, self.dir / "server.log")
        self.admin_token = await login(self.url, "soak-admin", PASSWORD, authenticator)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "videoid.bench.traced_serve"]
        command += ["--tracemalloc"] if self.trace else []
        command += ["serve", "--port", str(port), "--data-dir", str(self.dir)]
        with open(self.dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                # the product's defaults (every onboarding step, live analysis, recording)
                # but a short reconnect window, so that a hung-up call ends soon
                env={
                    **os.environ,
                    "VIDEOID_CALL_RECONNECT_SECONDS": str(RECONNECT_SECONDS),
                    **self.env,
                },
            )
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def invite(self, http: aiohttp.ClientSession, n: int) -> str:
        async with http.post(
            f"{self.url}/api/invitations",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            json={"email": f"soak{n}@example.org", "phone": f"+39347{n:07d}"},
        ) as r:
            body = await r.json()
            if r.status != 201:
                raise ProtocolError(f"invitation refused: {body}", code="invitation_refused")
            return str(body["url"])

    async def dump_trace(self) -> Path:
        """Ask the traced server for a snapshot; the dump's path without suffix."""
        done_before = set(self.dir.glob("trace-*.done"))
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            new = set(self.dir.glob("trace-*.done")) - done_before
            if new:
                return new.pop().with_suffix("")
            await asyncio.sleep(0.5)
        raise RuntimeError("the server wrote no trace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_documents(directory: Path, count: int) -> list[tuple[Path, Path]]:
    """``count`` synthetic identity cards (front, back) as the customers' photos, each
    checked to read here first (a seed whose zone does not read is skipped)."""
    from ..documents.analysis import mrz_file
    from ..errors import VideoidError

    out: list[tuple[Path, Path]] = []
    portrait = portrait_from(Path(DEFAULT_PHOTO))
    for seed in itertools.count(5):
        if len(out) >= count:
            break
        rng = random.Random(seed)
        back, front = render(make_document(rng, "TD1"), portrait, rng)
        assert front is not None
        paths = (directory / f"id{seed}-front.jpg", directory / f"id{seed}-back.jpg")
        front.convert("RGB").save(paths[0])
        back.convert("RGB").save(paths[1])
        try:
            if mrz_file(paths[1].read_bytes()).valid(datetime.date.today()):
                out.append(paths)
        except VideoidError:
            continue
    return out


def _keyframes_on_request(peer: ClientPeer | None, track: ClipVideoTrack) -> None:
    """A keyframe request (the recorder's, a decoder's) restarts the clip at its one
    keyframe: the pre-encoded packets have no encoder to ask."""
    if peer is None:
        return
    for sender in peer.pc.getSenders():
        if sender.track is track:
            sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]


class Load:
    """The customers and operators, ``pairs`` of each at a time."""

    def __init__(
        self,
        server: Server,
        args: argparse.Namespace,
        clip: Clip,
        documents: list[tuple[Path, Path]],
        authenticator: Authenticator,
    ) -> None:
        self.server = server
        self.args = args
        self.clip = clip
        self.documents = documents
        self.authenticator = authenticator
        self.tally = Tally()
        self.stopping = asyncio.Event()
        self._numbers = itertools.count()
        self._endings: dict[str, str] = {}
        """Session → how its customer ends it (the operator plays along)."""
        self._active = 0
        """Customers under way (the operators stay until the last one is done)."""
        self._calls = 0
        """Calls the operators are in: a hung-up call goes on in the server until its
        reconnect window runs out, after its customer is done."""
        self.running = asyncio.Event()
        """Cleared for a quiet point: no new customer starts."""
        self.running.set()

    async def quiet(self, timeout_seconds: float) -> None:
        """Stop starting customers and wait for those under way, and their calls, to
        finish."""
        self.running.clear()
        deadline = time.monotonic() + timeout_seconds
        while (self._active or self._calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)

    async def customer(self, http: aiohttp.ClientSession) -> None:
        while not self.stopping.is_set():
            await self.running.wait()
            if self.stopping.is_set():
                return
            n = next(self._numbers)
            ending = ENDINGS[n % len(ENDINGS)]
            front, back = self.documents[n % len(self.documents)]
            where = "invitation"
            bot: CustomerBot | None = None
            self._active += 1
            try:
                bot = CustomerBot(
                    await self.server.invite(http, n),
                    video := ClipVideoTrack(self.clip),
                    onboarding=OnboardingInput(
                        document_front=front,
                        document_back=back,
                        selfie=Path(self.args.selfie),
                        country="UTO",
                        document_type="id_card",
                    ),
                    sms_outbox=self.server.dir / "outbox" / "sms.jsonl",
                )
                where = "onboarding"
                try:
                    await bot.onboard()
                except TimeoutError:
                    # the connectivity test's result can be lost under load (the
                    # server closes its channel soon after sending it): the customer
                    # presses "test again", as on the page
                    self.tally.retried["connectivity test"] += 1
                    await bot.onboard()
                where = "queue"
                session = await bot.connect()
                self._endings[session["session_id"]] = ending
                await bot.join_queue()
                await bot.wait_call(STEP_SECONDS)
                where = "call"
                await bot.connect_media()
                _keyframes_on_request(bot.peer, video)
                if ending == "hangup":
                    assert bot.peer is not None
                    await bot.peer.wait_frames("video", 1, STEP_SECONDS)
                    await asyncio.sleep(self.args.watch_seconds)
                else:
                    await bot.wait_outcome(STEP_SECONDS)
                self.tally.done[ending] += 1
            except Exception as err:
                code = getattr(err, "code", type(err).__name__)
                self.tally.failed[f"{where}: {code}"] += 1
                if sum(self.tally.failed.values()) <= 5:
                    last = traceback.extract_tb(err.__traceback__)[-3:]
                    at = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(last))
                    print(f"  customer {n} failed at {where}: {err!r} ({at})", flush=True)
            finally:
                self._active -= 1
                if bot is not None:
                    await bot.close()

    async def operator(self, index: int) -> None:
        bot = OperatorBot(
            self.server.url,
            f"soak-op-{index}",
            PASSWORD,
            authenticator=self.authenticator,
            watch_seconds=self.args.watch_seconds,
        )
        await bot.connect()
        await bot.set_presence("available")
        try:
            while not (self.stopping.is_set() and self._active == 0):
                await self._one_call(bot)
        finally:
            await bot.signaling.close()

    async def _one_call(self, bot: OperatorBot) -> None:
        bot.video = video = ClipVideoTrack(self.clip)  # a sender's track is used once
        try:
            session_id, peer = await bot.accept_next(2.0)
        except ProtocolError as err:
            if err.code != "timeout":
                self.tally.failed[f"operator accept: {err.code}"] += 1
            return
        _keyframes_on_request(peer, video)
        ending = self._endings.pop(session_id, "approved")
        self._calls += 1
        try:
            await peer.wait_frames("video", 1, STEP_SECONDS)
            if ending == "hangup":
                while (await bot.signaling.next("call_ended", STEP_SECONDS))[
                    "session_id"
                ] != session_id:
                    pass
                return
            await asyncio.sleep(self.args.watch_seconds)
            await bot.run_checklist(STEP_SECONDS, approving=ending == "approved")
            reason = bot.reasons.get(ending, ["unknown"])[0]
            await bot.decide({"session_id": session_id, "outcome": ending, "reason_code": reason})
        except ProtocolError as err:
            self.tally.failed[f"operator call: {err.code}"] += 1
        finally:
            self._calls -= 1
            await peer.close()
            # a long-lived console's events of this call (signals, queue snapshots)
            bot.signaling.drain_all(keep=("assignment_offered",))


async def _sampler(pid: int, started: float, samples: list[Sample], every: float) -> None:
    while True:
        samples.append(sample(pid, time.monotonic() - started))
        await asyncio.sleep(every)


async def _run(args: argparse.Namespace, work: Path) -> None:
    photo = Path(args.photo)
    clip = await asyncio.to_thread(build_clip, photo, Path(args.cache_dir))
    documents = await asyncio.to_thread(make_documents, work, 4)
    (work / "data").mkdir()
    authenticator = Authenticator()
    env = dict(item.split("=", 1) for item in args.server_env)
    server = Server(work, args.pairs, args.trace, env)
    seconds = args.minutes * 60
    print(
        f"soak: {args.pairs} customers at a time for {args.minutes:g} min, the whole flow "
        f"(invitation, consent, identity card front and back, data, selfie, connectivity "
        f"and A/V tests, queue, call with live analysis and recording, checklist, "
        f"decision); endings {', '.join(ENDINGS)}; RSS sampled every "
        f"{args.sample_seconds:g} s"
        + ("; TRACED (tracemalloc: memory not the server's)" if args.trace else ""),
        flush=True,
    )
    samples: list[Sample] = []
    traces: list[Path] = []
    quiet: list[Sample] = []
    """The server's RSS at each quiet point (no call, garbage collected, malloc
    trimmed): what the calls so far left behind, without the load's own memory."""

    async def quiet_point(load: Load, elapsed_from: float) -> None:
        await load.quiet(DRAIN_SECONDS)
        await asyncio.sleep(3)  # the server closes the last call's peers
        traces.append(await server.dump_trace())
        quiet.append(sample(server.pid, time.monotonic() - elapsed_from))

    try:
        await server.start(authenticator)
        await asyncio.sleep(5)  # the workers load their models
        idle_before = sample(server.pid, 0.0)
        load = Load(server, args, clip, documents, authenticator)
        started = time.monotonic()
        sampler = asyncio.create_task(_sampler(server.pid, started, samples, args.sample_seconds))
        async with aiohttp.ClientSession() as http:
            operators = [asyncio.create_task(load.operator(i)) for i in range(args.pairs)]
            await asyncio.sleep(1.0)
            customers = [asyncio.create_task(load.customer(http)) for _ in range(args.pairs)]
            warm_up_end = seconds / 3
            next_quiet = warm_up_end
            next_print = 60.0
            while (elapsed := time.monotonic() - started) < seconds:
                if server.proc is not None and server.proc.poll() is not None:
                    raise RuntimeError(
                        f"the server stopped (exit status {server.proc.returncode}) "
                        f"after {elapsed:.0f} s; see its log (--keep)"
                    )
                if elapsed >= next_quiet:
                    await quiet_point(load, started)
                    print(f"  quiet point at t={quiet[-1].at:.0f} s: server "
                          f"{quiet[-1].server_mb:.1f} MB", flush=True)  # fmt: skip
                    load.running.set()
                    next_quiet += args.quiet_every * 60
                if elapsed >= next_print and samples:
                    s = samples[-1]
                    print(
                        f"  t={s.at:5.0f} s  {load.tally.line()}; server {s.server_mb:6.1f} MB, "
                        f"workers {sum(s.workers_mb.values()):6.1f} MB",
                        flush=True,
                    )
                    next_print += 60.0
                await asyncio.sleep(1.0)
            load_end = samples[-1] if samples else sample(server.pid, seconds)
            where = memory_map(server.pid)
            await quiet_point(load, started)  # the last: the customers under way finish
            load.stopping.set()
            load.running.set()  # the customers' loops see the stop
            # the operators (and any customer the quiet point gave up on) stop
            _, late = await asyncio.wait([*customers, *operators], timeout=DRAIN_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        sampler.cancel()
        await asyncio.sleep(10)  # what the server holds once the last call is done
        idle_after = sample(server.pid, time.monotonic() - started)
    finally:
        server.stop()
    _report(args, load.tally, samples, idle_before, load_end, idle_after, seconds)
    if len(quiet) >= 2:
        points = ", ".join(f"t={q.at:.0f} s {q.server_mb:.1f}" for q in quiet)
        change = quiet[-1].server_mb - quiet[0].server_mb
        print(
            f"  quiet points (no call, garbage collected, malloc trimmed; MB): {points}\n"
            f"  retained memory trend through them (least squares): "
            f"{slope_mb_per_hour(quiet):+.1f} MB/hour (anonymous "
            f"{slope_mb_per_hour(quiet, anonymous=True):+.1f}; goal: under "
            f"{GOAL_MB_PER_HOUR:g}); first to last {change:+.1f} MB"
        )
    if args.csv:
        _write_csv(Path(args.csv), samples)
    print(
        f"  at the end of the load: [heap] {where['heap']:.1f} MB, other anonymous "
        f"{where['anonymous']:.1f} MB ({where['anonymous_maps_over_1mb']:.0f} mappings over "
        f"1 MB: malloc's thread arenas among them), files {where['files']:.1f} MB; "
        f"{where.get('threads', 0):.0f} threads"
    )
    if len(traces) >= 2:
        from .traced_serve import report

        report(traces[0], traces[-1])


def _write_csv(path: Path, samples: list[Sample]) -> None:
    lines = ["seconds,server_mb,server_anon_mb,workers_mb"] + [
        f"{s.at:.1f},{s.server_mb:.1f},{s.server_anon_mb:.1f},{sum(s.workers_mb.values()):.1f}"
        for s in samples
    ]
    path.write_text("\n".join(lines) + "\n")


def _report(
    args: argparse.Namespace,
    tally: Tally,
    samples: list[Sample],
    idle_before: Sample,
    load_end: Sample,
    idle_after: Sample,
    seconds: float,
) -> None:
    warm = [s for s in samples if s.at >= seconds / 3]
    second_half = [s for s in samples if s.at >= seconds / 2]
    warm_end = warm[0] if warm else load_end
    peak = max(samples, key=lambda s: s.server_mb) if samples else load_end
    print(f"\nsoak result ({args.minutes:g} min, {args.pairs} at a time): {tally.line()}")
    if tally.failed:
        print("  failures: " + ", ".join(f"{k} x{v}" for k, v in tally.failed.most_common()))
    print(
        f"  server RSS: idle before {idle_before.server_mb:.1f} MB, warm-up end "
        f"(t={warm_end.at:.0f} s) {warm_end.server_mb:.1f} MB, end of the load "
        f"{load_end.server_mb:.1f} MB, peak {peak.server_mb:.1f} MB (t={peak.at:.0f} s), "
        f"idle after {idle_after.server_mb:.1f} MB"
    )
    after_warm, half = slope_mb_per_hour(warm), slope_mb_per_hour(second_half)
    print(
        f"  server RSS slope (least squares): {after_warm:+.1f} MB/hour after the warm-up, "
        f"{half:+.1f} MB/hour over the second half (goal: under {GOAL_MB_PER_HOUR:g}); "
        f"anonymous memory alone: {slope_mb_per_hour(warm, anonymous=True):+.1f} and "
        f"{slope_mb_per_hour(second_half, anonymous=True):+.1f} MB/hour"
    )
    workers = sorted(set(idle_before.workers_mb) | set(load_end.workers_mb))
    for pid in workers:
        trend = [s.workers_mb[pid] for s in samples if pid in s.workers_mb]
        print(
            f"  worker {pid}: {idle_before.workers_mb.get(pid, 0.0):.1f} MB idle before, "
            f"{warm_end.workers_mb.get(pid, 0.0):.1f} at the warm-up end, "
            f"{load_end.workers_mb.get(pid, 0.0):.1f} at the end, peak "
            f"{max(trend, default=0.0):.1f}"
        )
