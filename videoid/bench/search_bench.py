"""``videoid bench search``: a database filled with many sessions, then every filter of
the compliance search timed (p50/p95 per filter, a whole page with its exact total).

:func:`fill` is also how the tests make thousands of sessions quickly: rows written in
bulk, as onboarding, the call and the decisions would have left them: sealed with a
data key per session, search keys included as blind indexes (derived by the same code
as the repository's; the repository must be given its keys, ``Repository.protect``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from ..compliance.search import OUTCOMES, Query, search
from ..db import Repository
from ..db.models import (
    CallItem,
    Customer,
    DataKey,
    Decision,
    SessionRow,
    SessionSearch,
    StepResult,
)
from ..db.personal_data import PersonalData, session_owner
from ..db.session_search import StepKeys, analysis_flags

SURNAMES = (
    "Smith", "Müller", "García", "Rossi", "Novák", "Kowalski", "Jensen", "Dubois", "Silva",
    "Papadopoulos", "Nagy", "Popescu", "Horvat", "Virtanen", "O'Brien", "Van der Berg",
    "Łukasz", "Østergaard", "Andersson", "Fernández",
)  # fmt: skip
GIVEN = (
    "Anna", "Jan", "Maria", "Peter", "Sofia", "Luca", "Eva", "Tomás", "Jürgen", "Zoë",
    "Ingrid", "Mateo", "Noor", "Ada", "Ilse", "Marek",
)  # fmt: skip
WARNINGS = ("document_expired", "mrz_check_failed", "country_mismatch")
SIGNALS = ("virtual_camera", "several_faces", "frames_frozen", "no_blink")
_DECIDED = {"approved": "approved", "rejected": "rejected", "suspended": "suspended"}
_BATCH = 1000


@dataclass(frozen=True)
class Filled:
    """What :func:`fill` wrote."""

    session_ids: list[str]
    """In creation order, oldest first."""
    people: list[dict[str, str]]
    """The personal data of each session, in the same order."""
    operators: list[str]
    """The usernames that decided."""


def person(rng: random.Random) -> dict[str, str]:
    """A made-up customer as the data step stores one."""
    return {
        "surname": rng.choice(SURNAMES),
        "given_names": rng.choice(GIVEN),
        "document_number": "".join(
            rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(9)
        ),
        "date_of_birth": datetime.date(rng.randint(1940, 2005), rng.randint(1, 12), 1).isoformat(),
        "nationality": "DEU",
    }


async def fill(
    repo: Repository,
    count: int,
    *,
    start: float,
    step_seconds: float = 60.0,
    rng: random.Random,
    people: Mapping[int, dict[str, str]] | None = None,
) -> Filled:
    """Write ``count`` sessions created ``step_seconds`` apart from ``start`` on, in
    bulk: a customer each, the data and document steps (some edited, some with
    warnings), for most a decision by one of three operators (some by two), a call's
    analysis (some flagged) and its gaps. ``people`` puts given personal data at
    given positions; the others are drawn from ``rng``."""
    operators = []
    for name in ("bench_olga", "bench_ivan", "bench_mia"):
        found = await repo.find_operator(username=name)
        operators.append(
            found.id if found else await repo.add_operator(name, "-", "operator", start)
        )
    usernames = ["bench_olga", "bench_ivan", "bench_mia"]
    personal = repo.personal
    ids: list[str] = []
    everyone: list[dict[str, str]] = []
    async with repo.engine.begin() as db:
        for first in range(0, count, _BATCH):
            n = min(_BATCH, count - first)
            customers = [
                {"email": "", "phone": "", "created_at": start + (first + i) * step_seconds}
                for i in range(n)
            ]
            customer_ids = list(
                await db.scalars(
                    insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
                    customers,
                )
            )
            sessions, results, keys, decisions, items = [], [], [], [], []
            data_keys = []
            for i in range(n):
                index = first + i
                at = start + index * step_seconds
                session_id = str(uuid.uuid4())
                owner = session_owner(session_id)
                key, wrapped = personal.new_key(owner)
                data_keys.append(
                    {
                        "owner": owner,
                        "key_id": personal.wrapper.key_id,
                        "wrapped_key": wrapped,
                        "created_at": at,
                    }
                )
                data = dict(people[index]) if people and index in people else person(rng)
                outcome = rng.choice(list(OUTCOMES))
                state = OUTCOMES[outcome][0]
                decided = _DECIDED.get(outcome) or ("approved" if state == "completed" else None)
                operator = rng.randrange(3) if decided else None
                sessions.append(
                    {
                        "id": session_id,
                        "customer_id": customer_ids[i],
                        "state": state,
                        "ready_state": "av_tested",
                        "invite_token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
                        "invite_expires_at": at + 72 * 3600,
                        "operator_id": operators[operator] if operator is not None else None,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                stored = {
                    "personal_data": {
                        "fields": data,
                        "edited": ["surname"] if rng.random() < 0.05 else [],
                    },
                    "document": {
                        "type": "id_card",
                        "country": "DEU",
                        "mrz": {"document_number": data["document_number"]},
                        "warnings": [rng.choice(WARNINGS)] if rng.random() < 0.05 else [],
                    },
                }
                for name, value in stored.items():
                    results.append(
                        {
                            "session_id": session_id,
                            "name": name,
                            "value": personal.seal_text(
                                key, owner, f"step:{name}", json.dumps(value)
                            ),
                            "at": at,
                        }
                    )
                summary = {
                    "signals": {"flags": [rng.choice(SIGNALS)] if rng.random() < 0.03 else []}
                }
                made = StepKeys.of(stored, personal)
                keys.append(
                    {
                        "session_id": session_id,
                        "name": made.name,
                        "document": made.document,
                        "step_flags": made.flags,
                        "call_flags": analysis_flags(summary) if decided else "",
                    }
                )
                if decided and operator is not None:
                    deciders = [operator] + ([(operator + 1) % 3] if rng.random() < 0.05 else [])
                    for n_th, who in enumerate(deciders):
                        decisions.append(
                            {
                                "session_id": session_id,
                                "operator_id": operators[who],
                                "outcome": decided,
                                "reason_code": "bench",
                                "reason_text": "",
                                "at": at + 600 + 60 * n_th,
                            }
                        )
                    items.append(
                        {
                            "session_id": session_id,
                            "kind": "analysis",
                            "actor": "system",
                            "at": at + 590,
                            "data": personal.seal_text(
                                key, owner, "item:analysis", json.dumps(summary)
                            ),
                        }
                    )
                    if rng.random() < 0.05:
                        items.append(
                            {
                                "session_id": session_id,
                                "kind": "gap",
                                "actor": "system",
                                "at": at + 300,
                                "data": personal.seal_text(key, owner, "item:gap", "{}"),
                            }
                        )
                ids.append(session_id)
                everyone.append(data)
            await db.execute(insert(DataKey), data_keys)
            await db.execute(insert(SessionRow), sessions)
            await db.execute(insert(StepResult), results)
            await db.execute(insert(SessionSearch), keys)
            if decisions:
                await db.execute(insert(Decision), decisions)
            if items:
                await db.execute(insert(CallItem), items)
    return Filled(ids, everyone, usernames)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=100_000, help="how many sessions to fill")
    p.add_argument("--runs", type=int, default=20, help="timed searches per filter")
    p.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL database (postgresql+asyncpg://…), filled in a schema of its "
        "own that is dropped afterwards; default: a temporary SQLite file",
    )


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _day(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).date().isoformat()


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rng = random.Random(14)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC).timestamp()
    step = 365 * 86400 / max(1, args.sessions)
    with tempfile.TemporaryDirectory(prefix="videoid-bench-search-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        schema = None
        if url.startswith("postgresql"):
            schema = f"videoid_bench_{uuid.uuid4().hex[:12]}"
            await _schema(url, f'CREATE SCHEMA "{schema}"')
        repo = await Repository.open(url, schema=schema)
        repo.protect(PersonalData.local(Path(tmp) / "keys"))
        try:
            began = time.perf_counter()
            filled = await fill(repo, args.sessions, start=start, step_seconds=step, rng=rng)
            print(f"filled {args.sessions} sessions in {time.perf_counter() - began:.1f} s")
            oldest = filled.people[0]
            month = {"from": _day(start + 100 * 86400), "to": _day(start + 130 * 86400)}
            first = await search(repo, Query.from_params({"page_size": "50"}))
            filters: dict[str, Mapping[str, str]] = {
                "none": {},
                "date (a month)": month,
                "outcome": {"outcome": "rejected"},
                "operator": {"operator": filled.operators[0]},
                "name (one person)": {"name": f"{oldest['given_names']} {oldest['surname']}"},
                "name (one word)": {"name": oldest["surname"]},
                "name, no match": {"name": "Zyxwvut"},
                "name + date": {"name": oldest["surname"], **month},
                "document": {"document": oldest["document_number"]},
                "flag (onboarding)": {"flag": "data_edited"},
                "flag (call)": {"flag": "virtual_camera"},
                "flag (four_eyes)": {"flag": "four_eyes"},
                "flag (no_recording)": {"flag": "no_recording"},
                "outcome + operator + flag": {
                    "outcome": "approved",
                    "operator": filled.operators[1],
                    "flag": "reconnected",
                },
                "second page": {"after": first["next"] or ""},
            }
            figures: dict[str, dict[str, float]] = {}
            print(f"{'filter':28} {'total':>7} {'p50 ms':>8} {'p95 ms':>8}")
            for label, params in filters.items():
                query = Query.from_params(params)
                times = []
                total = 0
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    total = (await search(repo, query))["total"]
                    times.append((time.perf_counter() - t0) * 1000)
                p50, p95 = pct(times, 0.5), pct(times, 0.95)
                figures[label] = {"total": total, "p50": p50, "p95": p95}
                print(f"{label:28} {total:7} {p50:8.1f} {p95:8.1f}")
            return figures
        finally:
            await repo.close()
            if schema is not None:
                await _schema(url, f'DROP SCHEMA "{schema}" CASCADE')


async def _schema(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as db:
            await db.execute(text(statement))
    finally:
        await engine.dispose()


def main(args: argparse.Namespace) -> None:
    asyncio.run(run(args))
