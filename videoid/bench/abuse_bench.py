"""``videoid bench abuse``: what an unauthenticated or a greedy client costs everyone else.

A real ``videoid serve`` runs in its own process on a fresh data directory; the bench
measures, from outside, what a person sees and what the server pays:

- **logins**: a real operator's password step, alone and while ``--logins`` logins for
  unknown users arrive at once from another address (127.0.0.2); the flood's answers
  by status, and the server's memory growth;
- **frames**: ``--frames`` malformed Socket.IO frames on raw websockets; how many
  sockets the server closed and how many bytes it logged;
- **photos**: a customer's document photo, alone and while other customers send
  ``--photos`` large photos (``--photo-mb`` MB each) at once, some on one session and
  the rest spread over ``--flooders`` sessions; the flood's answers by code.

Each phase prints its figures, and the victim's latency as a ratio against its own
baseline taken in the same run. Nothing is asserted here: the tests check the limits;
this prints what they cost."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ..bots.onboarding_client import OnboardingClient, OnboardingError
from .serving import wait_until_healthy

OPERATOR = "abuse-bench-operator"
ATTACKER_ADDRESS = "127.0.0.2"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logins", type=int, default=100, help="logins for unknown users at once")
    p.add_argument("--frames", type=int, default=2000, help="malformed frames per websocket")
    p.add_argument("--sockets", type=int, default=5, help="raw websockets sending them")
    p.add_argument("--photos", type=int, default=12, help="large photos sent at once")
    p.add_argument("--photo-mb", type=float, default=14.0, help="size of each large photo")
    p.add_argument("--flooders", type=int, default=4, help="sessions the large photos use")
    p.add_argument("--rounds", type=int, default=5, help="victim measurements per phase")


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="videoid-abuse-") as tmp:
        asyncio.run(_run(args, Path(tmp)))


class _Server:
    """``videoid serve`` in a child process, its output in a file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "videoid", *args, "--data-dir", str(self.data_dir)],
            input=stdin.encode(),
            capture_output=True,
            check=True,
            timeout=300,
        )
        return done.stdout.decode()

    def spawn(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "videoid", "serve", "--data-dir", str(self.data_dir),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def started(self) -> None:
        assert self.process is not None
        await wait_until_healthy(self.url, self.process, 60, self.log, every_seconds=0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def memory_mb(self) -> tuple[float, float]:
        """The server's resident memory now and at its peak, in MB."""
        assert self.process is not None
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        return _kib(fields.get("VmRSS", "0 kB")) / 1024, _kib(fields.get("VmHWM", "0 kB")) / 1024


def _kib(value: str) -> float:
    return float(value.split()[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(args: argparse.Namespace, tmp: Path) -> None:
    server = _Server(tmp / "data")
    password = secrets.token_urlsafe(18)
    server.cli(
        "operator", "add", "--username", OPERATOR, "--role", "operator", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    tokens = []
    for i in range(2 + args.flooders):
        out = server.cli(
            "invite", "--json", "--port", str(server.port),
            "--email", f"abuse{i}@example.org", "--phone", f"+3934712{i:05d}",
        )  # fmt: skip
        tokens.append(json.loads(out)["url"].rsplit("#", 1)[1])
    server.spawn()
    await server.started()
    try:
        print(f"videoid bench abuse: server pid {server.process.pid if server.process else '?'}")
        await _logins(server, password, args)
        await _frames(server, args)
        await _photos(server, tokens, args)
    finally:
        server.stop()


async def _timed(work: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


def _summary(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"


async def _logins(server: _Server, password: str, args: argparse.Namespace) -> None:
    async def login(http: aiohttp.ClientSession, username: str, secret: str) -> int:
        async with http.post(
            f"{server.url}/api/operator/login", json={"username": username, "password": secret}
        ) as response:
            await response.read()
            return response.status

    async with aiohttp.ClientSession() as http:
        mine: Counter[int] = Counter()

        async def operator_login() -> None:
            mine[await login(http, OPERATOR, password)] += 1

        baseline = [await _timed(operator_login) for _ in range(args.rounds)]
        rss_before, _ = server.memory_mb()
        log_before = server.log_bytes()
        attacker = aiohttp.TCPConnector(local_addr=(ATTACKER_ADDRESS, 0), limit=0)
        async with aiohttp.ClientSession(connector=attacker) as flood_http:
            flood = [
                asyncio.ensure_future(login(flood_http, f"nobody{i}", "wrong password"))
                for i in range(args.logins)
            ]
            await asyncio.sleep(0.2)
            during = [await _timed(operator_login) for _ in range(args.rounds)]
            statuses = Counter(await asyncio.gather(*flood))
        rss_after, _ = server.memory_mb()
    print(f"logins: operator alone: {_summary(baseline)}")
    print(
        f"logins: operator during {args.logins} unknown-user logins from {ATTACKER_ADDRESS}: "
        f"{_summary(during)}; ratio {statistics.median(during) / statistics.median(baseline):.2f}"
    )
    print(
        f"logins: the operator's answers {dict(sorted(mine.items()))}; the flood's "
        f"{dict(sorted(statuses.items()))}; server memory "
        f"{rss_after - rss_before:+.0f} MB; log {server.log_bytes() - log_before} bytes"
    )


BAD_FRAMES = ("42[]", "42{}", "4", '40/operator,{"token":', "zz")


async def _frames(server: _Server, args: argparse.Namespace) -> None:
    log_before = server.log_bytes()

    async def one(http: aiohttp.ClientSession, frame: str) -> tuple[int, bool]:
        ws = await http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket")
        await ws.receive(5)
        sent = 0
        for _ in range(args.frames):
            if ws.closed:
                break
            try:
                await ws.send_str(frame)
            except ConnectionError:
                break
            sent += 1
        closed = False
        try:
            async with asyncio.timeout(5):
                while not closed:
                    message = await ws.receive()
                    closed = message.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    )
        except TimeoutError:
            pass
        await ws.close()
        return sent, closed

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one(http, BAD_FRAMES[i % len(BAD_FRAMES)]) for i in range(args.sockets))
        )
        elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)
    sent = sum(s for s, _ in results)
    closed = sum(1 for _, c in results if c)
    print(
        f"frames: {args.sockets} websockets, up to {args.frames} malformed frames each: "
        f"{sent} sent before the close, {closed}/{args.sockets} closed by the server in "
        f"{elapsed:.1f} s; log {server.log_bytes() - log_before} bytes"
    )


def _victim_photo() -> bytes:
    from ..bench.documents import make_document, phone_photo, render

    rng = random.Random(7)
    side, _ = render(make_document(rng, "TD3"), None, rng)
    return phone_photo(side, rng)


def _large_photo(megabytes: float) -> bytes:
    """A PNG of noise of about the given size (noise does not compress)."""
    import numpy as np
    from PIL import Image

    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


async def _photos(server: _Server, tokens: list[str], args: argparse.Namespace) -> None:
    victim_photo, large = _victim_photo(), _large_photo(args.photo_mb)
    clients = [OnboardingClient(server.url, token) for token in tokens]
    try:
        for client in clients:
            await client.consent()
        victim, spare, flooders = clients[0], clients[1], clients[2:]

        async def send(client: OnboardingClient, data: bytes) -> str:
            try:
                answer = await client.document("front", data, country="UTO", doc_type="passport")
            except OnboardingError as err:
                return str(err.code)
            return "accepted" if answer.get("accepted") else "problems"

        baseline = [await _timed(lambda: send(victim, victim_photo)) for _ in range(2)]
        rss_before, _ = server.memory_mb()
        log_before = server.log_bytes()
        flood = [
            asyncio.ensure_future(send(flooders[i % len(flooders)] if flooders else spare, large))
            for i in range(args.photos)
        ]
        await asyncio.sleep(0.3)
        during = [await _timed(lambda: send(spare, victim_photo))]
        answers = Counter(await asyncio.gather(*flood))
        rss_after, peak = server.memory_mb()
    finally:
        for client in clients:
            await client.close()
    print(f"photos: a customer's photo alone: {_summary(baseline)}")
    print(
        f"photos: another customer's photo during {args.photos} photos of "
        f"{len(large) / 1e6:.1f} MB on {max(1, len(flooders))} sessions: {_summary(during)}; "
        f"ratio {statistics.median(during) / statistics.median(baseline):.2f}"
    )
    print(
        f"photos: flood answered {dict(sorted(answers.items()))}; server memory "
        f"{rss_after - rss_before:+.0f} MB (peak {peak:.0f} MB); "
        f"log {server.log_bytes() - log_before} bytes"
    )
