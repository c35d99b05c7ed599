"""A full disk is a clear error (issue 20, items 4 and 12): the server's data directory
on a small filesystem of its own (a tmpfs, mounted by the test), filled to the last
byte; requests that must write answer ``storage_full`` (507, JSON), never a bare 500,
and work again once there is room, with nothing saved before lost. Storage errors
never send the database's text to the client."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from videoid import http_api
from videoid.bots.onboarding_client import OnboardingClient, OnboardingError
from videoid.errors import StorageError, for_client

from .conftest import StartServer


@contextlib.contextmanager
def small_filesystem(where: Path, megabytes: int) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (this machine's CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as err:
                    assert err.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


async def _health(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/health") as response:
        return response.status, await response.json()


def document_photo() -> bytes:
    from videoid.bench.documents import make_document, phone_photo, render

    rng = random.Random(3)
    side, _ = render(make_document(rng, "TD3"), None, rng)
    return phone_photo(side, rng)


async def test_a_full_disk_answers_storage_full_and_loses_nothing(
    start_server: StartServer, tmp_path: Path
) -> None:
    with small_filesystem(tmp_path / "small", 24) as small:
        server = await start_server(
            server={"data_dir": str(small / "data"), "min_free_mb": 1},
            onboarding={"required_steps": ("consented", "documents_captured")},
        )
        invitation = await server.invite()
        client = OnboardingClient(server.url, invitation.token)
        try:
            await client.consent()
            filler = fill(small)
            data = document_photo()
            with pytest.raises(OnboardingError) as refused:
                await client.document("front", data, country="UTO", doc_type="passport")
            assert refused.value.status == 507, refused.value.body
            assert refused.value.code == "storage_full"
            assert "sqlite" not in str(refused.value.body).lower()
            health = await _health(server.url)
            assert health[0] == 503 and health[1]["checks"]["storage"] == "full", health
            # the database (a file on that disk) takes no write either
            assert health[1]["checks"]["database"] == "full", health
            assert health[1]["failing"] == ["database", "storage"]
            filler.unlink()
            for _ in range(50):  # the checks are cached for two seconds
                if (await _health(server.url))[0] == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await _health(server.url))[0] == 200
            # room again: the consent given before is still there, and the step goes on
            overview = await client.overview()
            assert "consented" in str(overview), overview
        finally:
            await client.close()
            await server.stop()


def test_a_storage_error_never_carries_the_database_text_to_the_client() -> None:
    sql = OperationalError(
        "UPDATE customers SET email=? WHERE id=?", ("ada@example.org", 1), Exception("locked")
    )
    try:
        raise StorageError(f"cannot save: {sql}") from sql
    except StorageError as err:
        public = for_client(err, "test")
    assert public.code == "storage_error" and public.status == 500
    assert "ada@example.org" not in public.message and "UPDATE" not in public.message
    full = OperationalError(
        "INSERT INTO x VALUES (?)", ("y",), Exception("database or disk is full")
    )
    assert for_client(full, "test").code == "storage_full"
    assert for_client(OSError(errno.ENOSPC, "No space left on device"), "test").status == 507
    assert for_client(RuntimeError("boom"), "test").code == "internal_error"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_database_statement_that_hangs_is_cancelled(
    database_url: str, start_server: StartServer
) -> None:
    """Issue 20.10: a statement that PostgreSQL does not finish (a lock held elsewhere, a
    runaway query) is cancelled after ``database.statement_timeout_seconds`` instead of
    holding its request and connection; the connection serves the next request."""
    server = await start_server(database_url, database={"statement_timeout_seconds": 0.5})
    engine = server.services.repo.engine
    started = asyncio.get_running_loop().time()
    with pytest.raises(DBAPIError) as cancelled:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(5)"))
    assert asyncio.get_running_loop().time() - started < 3
    assert "statement timeout" in str(cancelled.value)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_health_fails_when_the_database_takes_no_write(
    database_url: str, start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20.10: a database that still answers reads but takes no write — a
    fail-over to a read-only standby, a table locked — is not called healthy."""
    import asyncpg

    monkeypatch.setattr(http_api, "HEALTH_CACHE_SECONDS", 0.0)  # each request checks
    server = await start_server(database_url)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    name = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(dsn)
    try:
        assert (await _health(server.url))[0] == 200
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        status, health = await _health(server.url)
        assert status == 503 and health["checks"]["database"] == "read_only", health
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        # a write held up behind a lock: slow, not ok
        async with admin.transaction():
            await admin.execute("LOCK TABLE health_probe IN ACCESS EXCLUSIVE MODE")
            status, health = await _health(server.url)
            assert status == 503 and health["checks"]["database"] == "slow", health
        assert (await _health(server.url))[0] == 200
    finally:
        await admin.close()
