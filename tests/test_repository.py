"""The repository against both databases: SQLite (the embedded default) and PostgreSQL
(127.0.0.1:5432, database ``test``), each test in a schema of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from videoid.db import Repository
from videoid.db.personal_data import PersonalData
from videoid.errors import StorageError, ValidationError
from videoid.queue import AssignmentDrawn
from videoid.session import IdentificationSession, Outcome, State

from .conftest import POSTGRES_URL


async def _postgres_schema() -> str | None:
    import asyncpg

    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    schema = f"videoid_test_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    return schema


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


Opener = Callable[[], Awaitable[Repository]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def open_repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens (applying migrations) the same fresh database as often as a test asks."""
    opened: list[Repository] = []
    schema = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    else:
        schema = await _postgres_schema()
        if schema is None:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
            pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        url = POSTGRES_URL

    async def open_() -> Repository:
        opened.append(await Repository.open(url, schema=schema))
        opened[-1].protect(PersonalData.local(tmp_path / "keys"))
        return opened[-1]

    yield open_
    for repository in opened:
        await repository.close()
    if schema is not None:
        await _drop_schema(schema)


@pytest.fixture
async def repo(open_repo: Opener) -> Repository:
    return await open_repo()


async def test_migrations_are_idempotent(open_repo: Opener) -> None:
    first = await open_repo()
    await first.add_operator("olga", "hash", "operator", 1.0)
    again = await open_repo()  # runs the migrations again: nothing new, nothing lost
    assert await again.count_operators() == 1
    found = await again.find_operator(username="olga")
    assert found is not None and found.role == "operator"


async def test_operators_and_logins(repo: Repository) -> None:
    op = await repo.add_operator("olga", "hash", "operator", 1.0)
    with pytest.raises(ValidationError) as err:
        await repo.add_operator("olga", "hash2", "supervisor", 2.0)
    assert err.value.code == "username_taken"
    with pytest.raises(ValidationError):
        await repo.add_operator("bob", "hash", "admin", 2.0)
    found = await repo.find_operator(username="olga")
    assert found is not None and found.id == op and found.role == "operator"
    assert (found.disabled, found.enrolled) == (False, False)
    await repo.add_login(op, "t" * 64, 10.0, 20.0)
    assert (await repo.find_login("t" * 64, 15.0)) is not None
    assert await repo.find_login("t" * 64, 20.0) is None  # expired
    await repo.delete_login("t" * 64)
    assert await repo.find_login("t" * 64, 15.0) is None


async def test_session_life_is_persisted_with_times(repo: Repository) -> None:
    op = await repo.add_operator("olga", "hash", "operator", 1.0)
    sid = await repo.create_session(
        email="a@example.org",
        phone="+391234567",
        token_hash="h" * 64,
        ready_state="created",
        now=100.0,
        expires_at=1000.0,
    )
    assert (await repo.find_session(token_hash="h" * 64)).id == sid  # type: ignore[union-attr]
    machine = IdentificationSession(sid)
    machine.enter_queue(101.0)
    machine.assign(op, 102.0)
    await repo.save_assignment(AssignmentDrawn(sid, op, (op, op + 1), 0, 102.0))
    machine.start_call(op, 103.0)
    machine.decide(op, Outcome.SUSPENDED, "needs_review", "blurry document", 104.0)
    await repo.save_events(
        sid,
        machine.pop_events(),
        state=machine.state.value,
        ready_state=machine.ready_state.value,
        operator_id=machine.operator_id,
        handled_by=machine.handled_by,
    )
    record = await repo.find_session(id=sid)
    assert record is not None
    assert (record.state, record.operator_id, record.updated_at) == ("suspended", op, 104.0)
    assert record.handled_by == {op}  # who handled it, for the review's four eyes
    assert await repo.transitions(sid) == [
        ("created", "created", 100.0, "provider"),
        ("created", "waiting", 101.0, "customer"),
        ("waiting", "assigned", 102.0, "system"),
        ("assigned", "in_call", 103.0, f"operator:{op}"),
        ("in_call", "suspended", 104.0, f"operator:{op}"),
    ]
    [decision] = await repo.decisions(sid)
    assert (decision.outcome, decision.reason_text) == ("suspended", "blurry document")
    [draw] = await repo.assignments(sid)
    assert draw.candidates == (op, op + 1) and draw.operator_id == op
    assert [r.id for r in await repo.sessions_in([State.SUSPENDED.value])] == [sid]


async def test_a_failed_save_keeps_what_was_saved(repo: Repository) -> None:
    sid = await repo.create_session(
        email="a@example.org",
        phone="+391234567",
        token_hash="k" * 64,
        ready_state="created",
        now=1.0,
        expires_at=9.0,
    )
    machine = IdentificationSession(sid)
    machine.enter_queue(2.0)
    await repo.save_events(
        sid, machine.pop_events(), state="waiting", ready_state="created", operator_id=None
    )
    machine.assign(424242, 3.0)  # no such operator: the foreign key refuses it
    with pytest.raises(StorageError):
        await repo.save_events(
            sid, machine.pop_events(), state="assigned", ready_state="created", operator_id=424242
        )
    record = await repo.find_session(id=sid)
    assert record is not None and record.state == "waiting"
    assert [t[1] for t in await repo.transitions(sid)] == ["created", "waiting"]


async def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open the database"):
        await Repository.open("postgresql+asyncpg://nobody@127.0.0.1:1/none")


async def test_a_query_cancelled_twice_leaves_no_task_behind(tmp_path: Path) -> None:
    """A task cancelled in the middle of a query, then again while SQLAlchemy ends the
    connection (as at shutdown, when every task is cancelled): nothing is left
    waiting. aiosqlite's graceful close used to wait forever for a thread that the
    forced close had stopped, and an event loop's shutdown with it."""
    import asyncio

    from sqlalchemy import text

    from videoid.db.repository import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cancel.db'}")
    slow = text(
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000000)"
        " SELECT count(*) FROM r"
    )

    async def query() -> None:
        async with engine.connect() as connection:
            await connection.execute(slow)

    try:
        for attempt in range(12):
            task = asyncio.create_task(query())
            await asyncio.sleep(0.02 + attempt * 0.005)
            task.cancel()
            for _ in range(attempt % 5):
                await asyncio.sleep(0)
            others = asyncio.all_tasks() - {asyncio.current_task()}
            for other in others:
                other.cancel()
            if others:
                _, pending = await asyncio.wait(others, timeout=5)
                assert not pending, (attempt, pending)
    finally:
        await engine.dispose()
        # the workers of the connections stopped without waiting finish now, while this
        # loop still takes their answers (after it closes they would fail in the thread)
        import threading

        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 10)
        await asyncio.sleep(0)


async def test_parallel_photo_attempts_take_at_most_the_limit(open_repo: Opener) -> None:
    """R2 (issue 14): an attempt is taken in the database before the photo is analysed;
    50 reservations at once from two connection pools (as two processes) take exactly
    the limit, on SQLite and PostgreSQL."""
    first, second = await open_repo(), await open_repo()
    sid = await first.create_session(
        email="a@example.org",
        phone="+391234567",
        token_hash="p" * 64,
        ready_state="created",
        now=100.0,
        expires_at=1000.0,
    )
    taken = await asyncio.gather(
        *((first if i % 2 else second).reserve_attempt(sid, "selfie", 5, 101.0) for i in range(50))
    )
    granted = [t for t in taken if t is not None]
    assert len(granted) == 5 and sorted(left for _, left in granted) == [0, 1, 2, 3, 4]
    assert await first.count_attempts(sid, "selfie") == 5
    await first.finish_attempt(granted[0][0], True, [], 102.0)
    assert await second.reserve_attempt(sid, "selfie", 5, 103.0) is None
    assert await second.reserve_attempt(sid, "document_front", 5, 103.0) is not None


async def test_who_handled_a_session_is_found_for_sessions_from_before(tmp_path: Path) -> None:
    """Migration 0019 gives each existing session its ``handled_by`` from its
    transitions' operators and its decisions (the four-eyes rule's input)."""
    import sqlalchemy
    from alembic import command

    from videoid.db.repository import migrations

    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    repo = await Repository.open(url)
    repo.protect(PersonalData.local(tmp_path / "keys"))
    try:
        first = await repo.add_operator("olga", "hash", "operator", 1.0)
        second = await repo.add_operator("ivan", "hash", "operator", 1.0)
        sid = await repo.create_session(
            email="a@example.org",
            phone="+391234567",
            token_hash="b" * 64,
            ready_state="created",
            now=1.0,
            expires_at=1e9,
        )
        machine = IdentificationSession(sid)
        machine.enter_queue(2.0)
        for n, operator in enumerate((first, second)):
            machine.assign(operator, 3.0 + n)
            machine.start_call(operator, 3.1 + n)
            if n == 0:
                machine.drop_call(3.2, by="operator")
        machine.decide(second, Outcome.SUSPENDED, "needs_review", "", 5.0)
        await repo.save_events(  # as an older version wrote it: no handled_by
            sid, machine.pop_events(), state="suspended", ready_state="created", operator_id=None
        )
    finally:
        await repo.close()
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    with engine.begin() as connection:
        command.downgrade(migrations(connection), "0018")
    engine.dispose()
    again = await Repository.open(url)  # upgraded to the head again: 0019 runs
    try:
        record = await again.find_session(id=sid)
        assert record is not None and record.handled_by == {first, second}
    finally:
        await again.close()
