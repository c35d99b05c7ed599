"""Personal data encrypted at rest (issue 14, item 8; R13, R14): names, document
numbers, dates of birth, the MRZ, contacts, call items, decisions' reasons and the
customer's certificate are sealed with a data key per session (or customer), found by
keyed blind indexes, and destroyed with the key at the end of retention. The raw
database (SQLite's file and write-ahead log; every text and bytea column of every
PostgreSQL table) and the data directory's files are scanned for the values."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from videoid.db.models import CallItem, Customer, Decision, SessionRow, StepResult
from videoid.db.personal_data import PersonalData, session_owner
from videoid.db.repository import MIGRATIONS
from videoid.errors import StorageError
from videoid.recordings.evidence import collect
from videoid.storage.envelope import LocalMasterKey

from .conftest import Server, StartServer
from .test_compliance import get, login
from .test_contract_signing import approved, certificate_and_signature

SURNAME, GIVEN = "Zabriskie", "Philippa"
NUMBER, BORN = "ZX4839201", "1979-04-23"
EMAIL, PHONE = "ada@example.org", "+393471234567"  # what run_call's invitation uses
ADDRESS = "203.0.113.77"  # the consent's client address
FIELDS = {
    "surname": SURNAME,
    "given_names": GIVEN,
    "document_number": NUMBER,
    "date_of_birth": BORN,
    "nationality": "GBR",
}
MRZ = [
    "I<GBRZX48392014<<<<<<<<<<<<<<<",
    "7904235F3001012GBR<<<<<<<<<<<4",
    "ZABRISKIE<<PHILIPPA<<<<<<<<<<<",
]


def needles() -> dict[str, list[bytes]]:
    """Each value, in the forms it could be stored in."""
    return {
        "surname": [SURNAME.encode(), SURNAME.upper().encode()],
        "given names": [GIVEN.encode(), GIVEN.upper().encode()],
        "document number": [NUMBER.encode()],
        "birth date": [BORN.encode(), b"790423"],
        "e-mail": [EMAIL.encode()],
        "phone": [PHONE.encode(), PHONE[1:].encode()],
        "MRZ": [line.encode() for line in MRZ],
        "a purged session's reason": [PURGED_REASON.encode()],
        "client address": [ADDRESS.encode()],
    }


def file_hits(data_dir: Path) -> list[tuple[str, str]]:
    """(what, file) for every value found in a file of the data directory: the SQLite
    database, its write-ahead log, encrypted objects and recordings, keys, the token.
    The development outboxes stand for the SMS provider and the mail server (what was
    sent, not what is kept) and are left out."""
    hits = []
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file() or "outbox" in path.relative_to(data_dir).parts:
            continue
        raw = path.read_bytes()
        for what, forms in needles().items():
            if any(form in raw for form in forms):
                hits.append((what, str(path.relative_to(data_dir))))
    return hits


async def postgres_hits(url: str) -> list[tuple[str, str]]:
    """(what, table.column) for every value found in a text or bytea column of any
    table of the database at ``url``."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    hits = []
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
            " AND data_type IN ('text', 'character varying', 'bytea')"
        )
        assert len(columns) > 30, columns  # the tables are there
        for table, column, kind in columns:
            for what, forms in needles().items():
                for form in forms:
                    if kind == "bytea":
                        query = (
                            f'SELECT count(*) FROM "{table}" WHERE position($1 in "{column}") > 0'
                        )
                        found = await conn.fetchval(query, form)
                    else:
                        query = (
                            f'SELECT count(*) FROM "{table}"'
                            f' WHERE strpos(upper("{column}"), upper($1)) > 0'
                        )
                        found = await conn.fetchval(query, form.decode())
                    if found:
                        hits.append((what, f"{table}.{column}"))
    finally:
        await conn.close()
    return hits


async def stored_hits(server: Server, database_url: str) -> list[tuple[str, str]]:
    hits = file_hits(server.services.config.data_path)
    if database_url:
        hits += await postgres_hits(database_url)
    return hits


_LOGINS: dict[int, tuple[object, aiohttp.CookieJar]] = {}
"""The compliance officer's login per server (by its application): logged in once, as
each login spends a time step of the authenticator (more than three in half a minute
would wait for the next)."""


async def compliance_search(server: Server, **params: str) -> list[str]:
    app, jar = _LOGINS.get(id(server.app), (None, None))
    fresh = jar is None or app is not server.app
    if fresh:
        jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        if fresh:
            await login(http, server, "carla")
            _LOGINS[id(server.app)] = (server.app, http.cookie_jar)
        status, body = await get(http, f"{server.url}/api/compliance/sessions", params=params)
        assert status == 200, body
        return [s["session_id"] for s in body["sessions"]]


async def test_a_whole_flow_keeps_no_personal_data_in_clear(
    database_url: str, start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    """Call, approval, certificate, PIN, code, signature, evidence: none of the values
    is in the database or a file; authorised readers (the customer's link, the
    evidence, a compliance search by a name's word or the number) still see them; after
    the purge they are unreadable and the search finds nothing."""

    async def chat(server: Server, invitation: Any) -> None:  # what the call's chat keeps
        text = {"text": f"I am {GIVEN} {SURNAME}"}
        sid, now = invitation.session_id, server.services.clock.now()
        await server.services.repo.add_item(sid, "chat", "customer", text, now)

    server, invitation, me = await approved(
        start_server, customer_video, operator_video, chat, database_url=database_url
    )
    services, sid = server.services, invitation.session_id
    now = services.clock.now()
    # the data confirmed and the document read (approved() stored other ones)
    await services.repo.put_result(sid, "personal_data", {"fields": FIELDS, "edited": []}, now)
    mrz = {"document_number": NUMBER, "surname": SURNAME.upper(), "lines": MRZ}
    await services.repo.put_result(sid, "document", {"mrz": mrz, "warnings": []}, now)
    await services.repo.add_consent(
        sid, document="privacy", version="1", language="en", text_sha256="0" * 64,
        client_address=ADDRESS, now=now,
    )  # fmt: skip
    await certificate_and_signature(server, me)
    await services.evidence.settle()
    await server.operator("carla", role="compliance")

    assert await stored_hits(server, database_url) == []

    # authorised readers see them
    status, body = await me.call("GET")
    assert status == 200 and SURNAME in json.dumps(body), body
    customer = await services.repo.find_customer(
        (await services.repo.find_session(id=sid)).customer_id  # type: ignore[union-attr]
    )
    assert customer is not None and (customer.email, customer.phone) == (EMAIL, PHONE)
    assert ADDRESS in [c["client_address"] for c in await services.repo.consents(sid)]
    items = {
        i.name: i.data
        for i in await collect(
            services.repo, services.objects, services.config.data_path / "recordings", sid
        )
    }
    onboarding = json.loads(items["onboarding.json"])
    assert onboarding["personal_data"]["fields"] == FIELDS and onboarding["document"]["mrz"] == mrz
    assert f"{GIVEN} {SURNAME}" in items["call.json"].decode()
    [der] = [data for name, data in items.items() if name.startswith("certificates/")]
    assert SURNAME.encode() in der  # the certificate, opened
    session = json.loads(items["session.json"])
    assert SURNAME in session["certificates"][0]["subject"]
    for params in ({"name": SURNAME.lower()}, {"name": f"{GIVEN}"}, {"document": "zx 483-9201"}):
        assert await compliance_search(server, **params) == [sid], params
    assert await compliance_search(server, name=SURNAME[:5]) == []  # whole words

    await services.retention.purge(sid, services.clock.now())
    assert await services.repo.results(sid) == {}
    assert await services.repo.items(sid) == []
    customer = await services.repo.find_customer(customer.id)
    assert customer is not None and (customer.email, customer.phone) == ("", "")
    [certificate] = await services.repo.certificates(session_id=sid)
    assert (certificate.subject, certificate.der) == ("", b"")  # its key is gone
    engine = services.repo.engine
    async with engine.connect() as db:
        keys = (await db.execute(sa.text("SELECT owner, wrapped_key FROM data_keys"))).all()
    assert [k for o, k in keys if o == session_owner(sid)] == [None]
    for params in ({"name": SURNAME}, {"document": NUMBER}):
        assert await compliance_search(server, **params) == [], params
    assert await stored_hits(server, database_url) == []


# -- a database from before (migration 0014), sealed at the next start -------------------

SID = "5e55104e-0000-4000-8000-000000000015"
PURGED = "5e55104e-0000-4000-8000-00000000dead"
PURGED_REASON = "Quillfeather's licence was forged"
NOW = time.time()


def _old_rows(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "0013")
    connection.execute(
        sa.insert(Customer).values(email=EMAIL, phone=PHONE, created_at=1.0, person_key="p" * 64)
    )
    customer_id = connection.execute(sa.text("SELECT id FROM customers")).scalar_one()
    connection.execute(
        sa.insert(SessionRow).values(
            id=SID,
            customer_id=customer_id,
            state="rejected",
            ready_state="created",
            invite_token_hash="c" * 64,
            invite_expires_at=NOW + 3600,
            created_at=NOW,
            updated_at=NOW,  # recent: the start's retention purge leaves it
        )
    )
    for name, value in (
        ("personal_data", {"fields": FIELDS, "edited": ["surname"]}),
        ("document", {"mrz": {"document_number": NUMBER, "lines": MRZ}, "warnings": []}),
    ):
        connection.execute(
            sa.insert(StepResult).values(session_id=SID, name=name, value=json.dumps(value), at=1.0)
        )
    connection.execute(
        sa.insert(CallItem).values(
            session_id=SID, kind="chat", actor="customer", at=1.0, data=json.dumps({"t": SURNAME})
        )
    )
    connection.execute(
        sa.text(
            "INSERT INTO operators (username, password_hash, role, created_at,"
            " failed_logins) VALUES ('olga', '-', 'operator', 1.0, 0)"
        )
    )
    operator_id = connection.execute(sa.text("SELECT id FROM operators")).scalar_one()
    connection.execute(
        sa.insert(Decision).values(
            session_id=SID,
            operator_id=operator_id,
            outcome="rejected",
            reason_code="document_invalid",
            reason_text=f"{SURNAME}'s photo differs",
            at=1.0,
        )
    )
    command.upgrade(cfg, "0014")
    # a session purged by that version: its decision's reason was left in clear
    connection.execute(
        sa.insert(SessionRow).values(
            id=PURGED,
            customer_id=customer_id,
            state="rejected",
            ready_state="created",
            invite_token_hash="d" * 64,
            invite_expires_at=NOW,
            created_at=NOW - 1,
            updated_at=NOW - 1,
            purged_at=NOW,
        )
    )
    connection.execute(
        sa.insert(Decision).values(
            session_id=PURGED,
            operator_id=operator_id,
            outcome="rejected",
            reason_code="document_invalid",
            reason_text=PURGED_REASON,
            at=NOW - 1,
        )
    )
    # what migration 0014 derived when it first shipped (it now leaves them empty): the
    # name and number in clear, which a database upgraded then still holds
    connection.execute(
        sa.text("UPDATE session_search SET name = :name, document = :number"),
        {"name": "PHILIPPA<ZABRISKIE", "number": NUMBER},
    )
    found = connection.execute(sa.text("SELECT name, document FROM session_search")).all()
    assert found == [("PHILIPPA<ZABRISKIE", NUMBER)], found


async def test_an_older_database_is_sealed_at_start(
    database_url: str, start_server: StartServer, tmp_path: Path
) -> None:
    """Plain rows left by a version before 0015: after the next start no value is left
    in clear, and everything still reads and is found."""
    data = tmp_path / "data0"  # the first server's data directory
    data.mkdir()
    url = database_url or f"sqlite+aiosqlite:///{data.resolve() / 'videoid.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_old_rows)
    await engine.dispose()
    if not database_url:
        assert [w for w, _ in file_hits(data)] != []  # the old database has them in clear

    server = await start_server(database_url=database_url)
    assert server.services.config.data_path == data
    await server.operator("carla", role="compliance")
    repo = server.services.repo
    assert await stored_hits(server, database_url) == []

    results = await repo.results(SID)
    assert (
        results["personal_data"]["fields"] == FIELDS and results["document"]["mrz"]["lines"] == MRZ
    )
    assert (await repo.items(SID))[0]["data"] == {"t": SURNAME}
    assert (await repo.decisions(SID))[0].reason_text == f"{SURNAME}'s photo differs"
    customer = await repo.find_customer(
        (await repo.find_session(id=SID)).customer_id  # type: ignore[union-attr]
    )
    assert customer is not None and (customer.email, customer.phone) == (EMAIL, PHONE)
    # R4 still holds: the contacts' blind indexes
    assert await repo.contact_owner(99, EMAIL.upper(), "+390000000000", "q" * 64) == "email"
    assert await repo.contact_owner(99, "x@example.org", PHONE, "q" * 64) == "phone"
    # the person key was an unkeyed SHA-256 anyone could confirm by trying names and
    # birth dates: now that digest's blind index, and R4 still knows the same person
    assert customer.person_key == repo.personal.index("person", "p" * 64)
    same_person = repo.personal.index("person", "p" * 64)
    assert await repo.contact_owner(99, EMAIL, PHONE, same_person) is None
    for params in ({"name": "philippa"}, {"name": "Zabriskie"}, {"document": NUMBER}):
        assert await compliance_search(server, **params) == [SID], params
    # the purged session's reason: sealed, and its key destroyed at once
    assert (await repo.decisions(PURGED))[0].reason_text == ""
    # a second start seals nothing more
    assert set((await repo.seal_plain_rows(5.0)).values()) == {0}


async def test_sealed_values_open_only_as_what_they_were_sealed_as(tmp_path: Path) -> None:
    """A value copied to another session or field does not open; a destroyed key opens
    nothing; blind indexes depend on the index key and on the normalised value only."""
    personal = PersonalData.local(tmp_path / "keys")
    key, wrapped = personal.new_key("session:a")
    sealed = personal.seal_text(key, "session:a", "step:document", NUMBER)
    assert NUMBER not in sealed and sealed.startswith("pd1:")
    assert personal.open_text(key, "session:a", "step:document", sealed) == NUMBER
    assert personal.unwrap("session:a", wrapped) == key
    with pytest.raises(StorageError):
        personal.open_text(key, "session:b", "step:document", sealed)
    with pytest.raises(StorageError):
        personal.open_text(key, "session:a", "step:personal_data", sealed)
    assert personal.name_index("Philippa Zabriskie") == personal.name_index("philippa  ZABRISKIE")
    assert set(personal.name_index("Philippa Zabriskie").split()) == {
        personal.word_index("PHILIPPA"),
        personal.word_index("ZABRISKIE"),
    }
    assert personal.word_index("MUELLER") in personal.name_index("Jürgen Müller")
    assert personal.document_index("zx 483-9201") == personal.document_index(NUMBER)
    other = PersonalData(personal.wrapper, bytes(32))
    assert other.document_index(NUMBER) != personal.document_index(NUMBER)
    assert personal.contact_index("email", " ADA@Example.org ") == personal.contact_index(
        "email", EMAIL
    )


class CountingKey(LocalMasterKey):
    """The local master key, counting what it unwraps."""

    unwrapped = 0

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        self.unwrapped += 1
        return super().unwrap(wrapped, context)


def test_data_keys_are_unwrapped_once_per_cache_period() -> None:
    """A desk reading a session again does not ask the key port (a PKCS#11 token) each
    time; the key is unwrapped again after ``cache_seconds``, or when forgotten (its
    key destroyed), and never reused for another wrapped key of the same owner."""
    now = [0.0]
    master = CountingKey(bytes(range(32)))
    personal = PersonalData(master, bytes(32), cache_seconds=300, clock=lambda: now[0])
    key, wrapped = personal.new_key("session:a")
    for _ in range(5):
        assert personal.unwrap("session:a", wrapped) == key
    assert master.unwrapped == 1
    now[0] = 301.0
    assert personal.unwrap("session:a", wrapped) == key and master.unwrapped == 2
    personal.forget("session:a")
    assert personal.unwrap("session:a", wrapped) == key and master.unwrapped == 3
    other, rewrapped = personal.new_key("session:a")
    assert personal.unwrap("session:a", rewrapped) == other and master.unwrapped == 4
