"""Shared fixtures: an in-process server on a free loopback port, accounts, invitations,
and face videos made from the public face_recognition test photos."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from videoid.app import create_app
from videoid.bots.face_video import make_face_video
from videoid.config import load_config
from videoid.customer_client.invitations import Invitation
from videoid.db import Repository
from videoid.services import SERVICES, Services

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "var" / "test-assets" / "face_recognition"
ASSETS = ROOT / "var" / "test-assets"
PASSWORD = "correct horse battery"
POSTGRES_URL = os.environ.get(
    "VIDEOID_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _dump_tasks(signum: int, frame: Any) -> None:
    """``kill -USR1 <pytest>``: print every task of the running loop with its stack, to
    see what a hung test or teardown waits for."""
    loop = asyncio._get_running_loop()
    if loop is None:
        print("no running loop", file=sys.stderr)
        return
    for task in asyncio.all_tasks(loop):
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR1, _dump_tasks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    async def operator(self, username: str, role: str = "operator") -> int:
        return await self.services.accounts.add(username, PASSWORD, role, self.services.clock.now())

    async def invite(
        self, email: str = "ada@example.org", phone: str = "+393471234567"
    ) -> Invitation:
        return await self.services.invitations.create(
            email, phone, self.services.clock.now(), self.services.base_url
        )

    async def stop(self) -> None:
        await self.runner.cleanup()


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per run: a test server's database starts as a
    copy of it (migrating each one took most of a server's start)."""
    import sqlalchemy
    from alembic import command

    from videoid.db.repository import migrations

    path = tmp_path_factory.mktemp("template") / "videoid.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(migrations(connection), "head")
    engine.dispose()
    return path


@pytest.fixture
async def start_server(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[StartServer]:
    servers: list[Server] = []

    async def start(database_url: str = "", seed: int = 1, **sections: dict[str, Any]) -> Server:
        import shutil

        port = free_port()
        data = tmp_path / f"data{len(servers)}"
        if (
            not database_url
            and "data_dir" not in sections.get("server", {})
            and not (data / "videoid.db").exists()  # a test may have put one there
        ):
            data.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(migrated_sqlite, data / "videoid.db")
        overrides: dict[str, dict[str, Any]] = {
            "server": {"port": port, "data_dir": str(data)},
            "database": {"url": database_url},
            # The call tests go straight to the queue; the onboarding tests ask for
            # the steps they exercise (the product's default is all five).
            "onboarding": {"required_steps": ()},
            # the analysis workers start with the first call's first frame, not with
            # every test's server
            "live": {"warm_up": False},
            # the CA (a SoftHSM token and its keys) when a test first asks for it
            "ca": {"create_at_start": False},
        }
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        config = load_config(environ={}, overrides=overrides)
        app = create_app(config, rng=random.Random(seed))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        server = Server(f"http://127.0.0.1:{port}", app, runner)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()


def _face_video(name: str, suffix: str) -> Path:
    out = ASSETS / f"{name}{suffix}"
    if not out.exists():
        photo = PHOTOS / f"{name}.jpg"
        if not photo.exists():
            pytest.fail(f"{photo} is missing: run ./scripts/setup --test")
        make_face_video(photo, out)
    return out


@pytest.fixture(scope="session")
def customer_video() -> Path:
    """A face video (Obama, from face_recognition's test photos) used as a camera."""
    return _face_video("obama", ".webm")


@pytest.fixture(scope="session")
def operator_video() -> Path:
    return _face_video("biden", ".webm")


@pytest.fixture(scope="session")
def customer_y4m() -> Path:
    return _face_video("obama", ".y4m")


@pytest.fixture(scope="session")
def customer_hd_y4m() -> Path:
    """The customer's camera at 1024 x 768: enough pixels for a document photo."""
    out = ASSETS / "obama-1024x768.y4m"
    if not out.exists():
        make_face_video(PHOTOS / "obama.jpg", out, seconds=2.0, width=1024, height=768)
    return out


@pytest.fixture
async def aiohttp_server_factory() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Serve an aiohttp application on a free local port (a stand-in for an outside
    service); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        port = free_port()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(scope="session")
def softhsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SoftHSM token directory for the whole test session: SoftHSM reads its
    configuration once per process, so every in-process token lives here."""
    import shutil

    if shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2 is not installed: run ./scripts/setup --test")
    return tmp_path_factory.mktemp("softhsm")


@pytest.fixture
async def sqlite_repository(tmp_path: Path) -> AsyncIterator[Repository]:
    """A repository on a fresh SQLite file (migrated), its personal data keys local;
    closed after the test."""
    from videoid.db.personal_data import PersonalData

    repo = await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}")
    repo.protect(PersonalData.local(tmp_path / "keys"))
    yield repo
    await repo.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A server's database: SQLite in its data directory (``""``), or a PostgreSQL
    database of its own, created here and dropped after. Ask for it before
    ``start_server``, so that the server stops before its database is dropped."""
    if request.param == "sqlite":
        yield ""
        return
    import asyncpg

    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        admin = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    name = f"videoid_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
