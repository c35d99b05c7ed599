"""``videoid bench queue``: what waiting customers are told, against what happens.

A server in this process; ``--customers`` customers join the queue at once (real
Socket.IO clients) while ``--operators`` operators take calls one after the other
(signalling only: accept, hold the call ``--call-seconds`` on average, reject with a
reason). Per customer it records the estimate given when joining, the wait it really
had (joining to being assigned) and every ``queue`` message it received.

Two rounds on one database: a first start with no calls measured yet (the estimate
starts from ``queue.initial_handle_seconds``), then a restart, whose estimates start
from the calls the first round measured. Per round it prints the estimate's error at
joining (median and p95 of |estimate - wait|, and of the ratio), the error of the last
estimate each customer was sent, and the ``queue`` messages per customer (mean, max);
and the memory the burst left: this process's RSS (the server's and its clients') before
the customers came and once all were served and gone, malloc's bytes in use and held
free, and what the call center still holds (issue 20.9). ``--malloc-default`` leaves
glibc's malloc as it is, to compare with what ``videoid serve`` sets."""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..app import create_app
from ..bots.operator_bot import Authenticator, answer_checklist, login
from ..bots.signaling_client import SignalingClient
from ..config import load_config
from ..glibc_malloc import GlibcMalloc
from ..services import SERVICES

PASSWORD = "queue bench password"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", type=int, default=100)
    p.add_argument("--operators", type=int, default=3)
    p.add_argument("--call-seconds", type=float, default=1.0, help="mean call length")
    p.add_argument(
        "--malloc-default",
        action="store_true",
        help="leave glibc's malloc as it is (videoid serve fixes its mmap threshold)",
    )


def main(args: argparse.Namespace) -> None:
    if not args.malloc_default:
        GlibcMalloc().tune()  # as videoid serve does
    with tempfile.TemporaryDirectory(prefix="videoid-queue-") as tmp:
        asyncio.run(_run(args, Path(tmp)))


@dataclass
class _Customer:
    client: SignalingClient
    joined_at: float = 0.0
    estimate: float = 0.0
    assigned_at: float | None = None
    told: list[tuple[float, float]] = field(default_factory=list)
    """(when, estimated wait) of every queue message."""


async def _run(args: argparse.Namespace, tmp: Path) -> None:
    port, authenticator = _free_port(), Authenticator()  # the same staff, both rounds
    for round_name in ("first start, no calls measured", "after a restart"):
        await _round(args, tmp, round_name, port, authenticator)


async def _round(
    args: argparse.Namespace, tmp: Path, name: str, port: int, authenticator: Authenticator
) -> None:
    config = load_config(
        environ={},
        overrides={
            "server": {"port": port, "data_dir": str(tmp / "data")},
            "onboarding": {"required_steps": ()},
            "live": {"warm_up": False, "workers": 0},
            "ca": {"create_at_start": False},
            "recording": {"enabled": False},
            "signaling": {"events_per_second": 1000.0, "event_burst": 1000},
        },
    )
    app = create_app(config, rng=random.Random(1))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    services = app[SERVICES]
    memory = [_memory(services)]
    try:
        operators = []
        for i in range(args.operators):
            username = f"queue-bench-{i}"
            if await services.repo.find_operator(username=username) is None:
                await services.accounts.add(username, PASSWORD, "operator", time.time())
            client = SignalingClient(url, "/operator")
            await client.connect({"token": await login(url, username, PASSWORD, authenticator)})
            operators.append(client)
        customers = []
        for i in range(args.customers):
            invitation = await services.invitations.create(
                f"q{i}@example.org", f"+3934700{i:05d}", time.time(), url
            )
            client = SignalingClient(url, "/customer")
            await client.connect({"token": invitation.token})
            await client.next("session", 10)
            customers.append(_Customer(client))
        for c in customers:
            _listen(c)

        async def join(c: _Customer) -> None:
            reply = await c.client.request("join_queue")
            c.joined_at = time.monotonic()
            c.estimate = float(reply["estimated_wait_seconds"])

        await asyncio.gather(*(join(c) for c in customers))
        rng = random.Random(7)
        done = asyncio.Event()
        served = [0]

        async def work(op: SignalingClient) -> None:
            await op.request("set_presence", {"status": "available"})
            while not done.is_set():
                try:
                    offered = await op.next("assignment_offered", 5)
                except Exception:
                    continue
                await op.request("accept", {"session_id": offered["session_id"]})
                hold = asyncio.sleep(rng.uniform(0.5, 1.5) * args.call_seconds)
                items = (await op.request("call_view"))["checklist"]["items"]
                await answer_checklist(op, items, otp="failed", others="failed")
                await hold
                await op.request(
                    "decide",
                    {
                        "session_id": offered["session_id"],
                        "outcome": "rejected",
                        "reason_code": "document_invalid",
                    },
                )
                served[0] += 1
                if served[0] >= len(customers):
                    done.set()

        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(work(op) for op in operators)),
            timeout=60 + 3 * args.customers * args.call_seconds,
        )
        elapsed = time.monotonic() - started
        for client in [c.client for c in customers] + operators:
            await client.close()
        await asyncio.sleep(1.0)  # their disconnections handled
        memory.append(_memory(services))
        await asyncio.to_thread(GlibcMalloc().trim)  # as the server does every minute
        memory.append(_memory(services))
    finally:
        await runner.cleanup()
    _report(name, customers, elapsed, args)
    _report_memory(memory)


def _memory(services: Any) -> dict[str, Any]:
    """This process's resident memory (the server and its clients), malloc's bytes in
    use and held free, after a full collection; and what the call center holds."""
    gc.collect()
    rss = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return {"rss": rss, **GlibcMalloc().info(), "held": services.center.held()}


def _report_memory(memory: list[dict[str, Any]]) -> None:
    before, after, trimmed = memory
    mb = 2**20
    print(
        f"  memory (this process: the server and its clients, after a full collection): "
        f"RSS {before['rss']:.0f} MB before the customers came, {after['rss']:.0f} MB once "
        f"all were served and gone, {trimmed['rss']:.0f} MB after a trim; malloc in use "
        f"{before.get('in_use', 0) / mb:.0f} → {after.get('in_use', 0) / mb:.0f} MB, held "
        f"free {before.get('free', 0) / mb:.0f} → {after.get('free', 0) / mb:.0f} MB; the "
        f"call center holds {after['held']}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listen(c: _Customer) -> None:
    async def on_queue(payload: dict[str, Any]) -> None:
        c.told.append((time.monotonic(), float(payload["estimated_wait_seconds"])))

    async def on_assigned(payload: dict[str, Any]) -> None:
        if c.assigned_at is None:
            c.assigned_at = time.monotonic()

    c.client.on("queue", on_queue)
    c.client.on("assigned", on_assigned)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(name: str, customers: list[_Customer], elapsed: float, args: Any) -> None:
    waits = [(c, (c.assigned_at or c.joined_at) - c.joined_at) for c in customers]
    at_join = [abs(c.estimate - w) for c, w in waits]
    ratio = [c.estimate / w for c, w in waits if w > 0.5]
    last = []
    for c in customers:
        before = [(t, e) for t, e in c.told if t <= (c.assigned_at or t)]
        if before:
            t, e = before[-1]
            last.append(abs(e - ((c.assigned_at or t) - t)))
    messages = [len(c.told) for c in customers]
    print(
        f"queue bench ({name}): {len(customers)} customers, {args.operators} operators, "
        f"calls of about {args.call_seconds:.1f} s, all served in {elapsed:.1f} s"
    )
    print(
        f"  estimate at joining: |error| median {statistics.median(at_join):.1f} s, "
        f"p95 {_pct(at_join, 0.95):.1f} s; estimate/wait median "
        f"{statistics.median(ratio) if ratio else float('nan'):.2f}, "
        f"p95 {_pct(ratio, 0.95) if ratio else float('nan'):.2f}"
    )
    if last:
        print(
            f"  last estimate sent: |error| median {statistics.median(last):.1f} s, "
            f"p95 {_pct(last, 0.95):.1f} s"
        )
    print(
        f"  queue messages per customer: mean {statistics.mean(messages):.1f}, "
        f"max {max(messages)}; waits median {statistics.median(w for _, w in waits):.1f} s"
    )
