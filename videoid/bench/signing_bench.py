"""Benchmark of certificate issuance and contract signing (issue 6's goals): for 1, 10
and 100 customers in sequence, on one core, the time to generate a customer's key in
the SoftHSM2 token and issue their certificate, and the time to sign their contract
(PAdES with a timestamp and revocation data fetched from the server itself), p50/p95.

A real server (in this process, on a local port) with its own token under a temporary
data directory; nothing else runs meanwhile."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import socket
import statistics
import tempfile
import time
from typing import Any

from aiohttp import web
from asn1crypto import x509

from ..app import create_app
from ..config import load_config
from ..services import SERVICES
from ..trust.contract import ContractData, contract_pdf
from ..trust.signing import sign_pdf
from ..trust.signing_flow import signing_authority


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", default="1,10,100", help="how many customers, in sequence")
    p.add_argument("--cpu", type=int, default=0, help="the core to run on")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="videoid-bench-sign-") as tmp:
        config = load_config(
            environ={},
            overrides={
                "server": {"port": port, "data_dir": tmp},
                "onboarding": {"required_steps": ()},
                "live": {"warm_up": False, "workers": 0},
            },
        )
        app = create_app(config, rng=random.Random(1))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        services = app[SERVICES]
        try:
            ca = await services.trust.ca()  # made at the server's start
            print(
                f"{'customers':>9}{'issue p50 ms':>14}{'p95':>8}{'sign p50 ms':>13}{'p95':>8}"
                f"{'total s':>9}",
                flush=True,
            )
            for count in (int(n) for n in args.customers.split(",")):
                issue: list[float] = []
                sign: list[float] = []
                begin = time.perf_counter()
                for i in range(count):
                    invitation = await services.invitations.create(
                        f"c{i}@example.org",
                        "+393471234567",
                        services.clock.now(),
                        services.base_url,
                    )
                    fields = {
                        "surname": f"ROSSI{i}",
                        "given_names": "MARIO",
                        "nationality": "ITA",
                        "document_number": f"CA{i:05d}XY",
                        "date_of_birth": "1980-01-01",
                        "tax_code": "",
                    }
                    t0 = time.perf_counter()
                    record = await services.trust.issue(invitation.session_id, fields)
                    t1 = time.perf_counter()
                    pdf, _ = contract_pdf(
                        ContractData(
                            "bench provider",
                            invitation.session_id,
                            fields["surname"],
                            fields["given_names"],
                            fields["date_of_birth"],
                            "ITA",
                            fields["document_number"],
                            f"c{i}@example.org",
                            "+393471234567",
                            record.serial,
                            datetime.date.today(),
                        )
                    )
                    await sign_pdf(
                        pdf,
                        ca.keys,
                        record.key_label,
                        x509.Certificate.load(record.der),
                        await signing_authority(services.trust, services.config),
                        name="MARIO ROSSI",
                        reason="bench",
                    )
                    t2 = time.perf_counter()
                    issue.append((t1 - t0) * 1000)
                    sign.append((t2 - t1) * 1000)
                total = time.perf_counter() - begin
                results[str(count)] = {
                    "issue_ms": (statistics.median(issue), pct(issue, 0.95)),
                    "sign_ms": (statistics.median(sign), pct(sign, 0.95)),
                    "total_s": total,
                }
                print(
                    f"{count:>9}{statistics.median(issue):>14.1f}{pct(issue, 0.95):>8.1f}"
                    f"{statistics.median(sign):>13.1f}{pct(sign, 0.95):>8.1f}{total:>9.1f}",
                    flush=True,
                )
        finally:
            await runner.cleanup()
    return results


def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.cpu})
    asyncio.run(run(args))
