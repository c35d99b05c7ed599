"""Persistence of operators, logins, sessions and what happens to them.

One :class:`Repository` per process, over an async SQLAlchemy engine (SQLite by
default, PostgreSQL by URL). Database errors are translated to
:class:`~videoid.errors.StorageError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import case, delete, event, func, select, text, union_all, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..errors import StorageError, ValidationError
from ..private_files import private_file
from ..queue import AssignmentDrawn
from ..recordings.audit_chain import Entry, new_entry
from ..session.events import DecisionMade, Event, StateChanged
from .models import (
    Assignment,
    AuditAnchorRow,
    AuditDetails,
    AuditRow,
    CallItem,
    CaptureAttempt,
    CertificateRow,
    Consent,
    Customer,
    DataKey,
    Decision,
    EvidenceSealRow,
    HealthProbe,
    LegalHold,
    OneTimeCode,
    Operator,
    OperatorLogin,
    RecordingRow,
    SessionRow,
    SessionSearch,
    SessionToken,
    SignaturePin,
    StepResult,
    StoredObject,
    Transition,
)
from .personal_data import (
    TEXT_PREFIX,
    PersonalData,
    customer_owner,
    is_sealed_bytes,
    is_sealed_text,
    session_owner,
)
from .session_search import STEPS as SEARCHED_STEPS
from .session_search import SessionFilter, analysis_flags, index_steps, store_keys
from .session_search import conditions as search_conditions
from .session_search import page as search_page

MIGRATIONS = Path(__file__).with_name("migrations")
ROLES = ("operator", "supervisor", "compliance")


@dataclass(frozen=True)
class OperatorRecord:
    id: int
    username: str
    role: str
    password_hash: str
    disabled: bool = False
    """A disabled account cannot log in."""
    enrolled: bool = False
    """Whether it has a second factor (TOTP)."""


@dataclass(frozen=True)
class SessionRecord:
    id: str
    customer_id: int
    state: str
    ready_state: str
    invite_expires_at: float
    operator_id: int | None
    created_at: float
    updated_at: float
    handled_by: frozenset[int] = frozenset()
    """The operators who took its calls or decided it."""


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    kind: str
    session_id: str | None
    subject: str
    key_label: str
    der: bytes
    not_before: float
    not_after: float
    status: str
    revoked_at: float | None
    revocation_reason: str | None
    created_at: float
    ca_url: str | None = None
    """Base of the CRL, OCSP and caIssuers addresses written in the certificate."""


@dataclass(frozen=True)
class AuditAnchor:
    seq: int
    hash: str
    at: float
    reason: str
    signature: bytes
    timestamp: bytes | None


@dataclass(frozen=True)
class ObjectRecord:
    id: str
    session_id: str
    kind: str
    content_type: str
    size: int
    sha256: str
    key_id: str
    wrapped_key: bytes | None
    created_at: float


@dataclass(frozen=True)
class CustomerRecord:
    id: int
    email: str
    phone: str
    person_key: str | None


@dataclass(frozen=True)
class CodeRecord:
    id: int
    session_id: str
    purpose: str
    binding: str
    code_hash: str
    expires_at: float
    attempts: int
    used_at: float | None


@dataclass(frozen=True)
class DecisionRecord:
    session_id: str
    operator_id: int
    outcome: str
    reason_code: str
    reason_text: str
    at: float


def migrations(connection: Connection) -> AlembicConfig:
    """Alembic's configuration for this project's migrations, run on ``connection``
    (a synchronous one: ``command.upgrade(migrations(c), "head")``)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":  # a migration may take its time
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    command.upgrade(migrations(connection), "head")


SQLITE_BUSY_MS = 30_000
"""How long a SQLite statement waits for another writer's lock."""


def create_engine(
    url: str, schema: str | None = None, statement_timeout_seconds: float = 0.0
) -> AsyncEngine:
    """An engine for ``url``; ``schema`` (PostgreSQL only) puts every table in that
    schema, and ``statement_timeout_seconds`` (PostgreSQL only; 0: none) cancels a
    statement that runs longer."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            private_file(Path(path))  # personal data: the owner's alone, WAL included
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {"server_settings": {"search_path": schema}} if schema else {}
    engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if statement_timeout_seconds > 0:
        # a SET on each new connection, not a start-up parameter (which a pooler such
        # as PgBouncer refuses)
        limit = max(1, round(statement_timeout_seconds * 1000))

        def limit_statements(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute(f"SET statement_timeout = {limit}")
            cursor.close()

        event.listen(engine.sync_engine, "connect", limit_statements)
    return engine


def _terminate_sqlite_at_once() -> None:
    """SQLAlchemy ends a connection it invalidated (a query cancelled mid-way) by first
    trying aiosqlite's graceful close, shielded from cancellation; cancelled again
    there, it also force-closes, which stops aiosqlite's worker thread; the graceful
    close then waits in its ``finally`` for that thread forever, and so does whatever
    waits for the task (an event loop's shutdown). For a local SQLite file stopping
    the worker is all there is to do (SQLite rolls back what was open): interrupt what
    it runs, ask it to stop once, and wait for that (a bounded wait, never for a worker
    already told to stop), so that it answers while the event loop is still there."""
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
    from sqlalchemy.util.concurrency import await_, in_greenlet

    def terminate(self: Any) -> None:
        connection = self._connection
        told_before = not connection._running
        waiting = in_greenlet() and not told_before
        raw = connection._connection
        if raw is not None and waiting:
            # a statement still running stops now (safe from any thread); only when we
            # then wait, so that its error reaches the event loop while it runs
            raw.interrupt()
        done = connection.stop()
        if not waiting or done is None:
            return
        try:
            await_(asyncio.wait_for(asyncio.shield(done), 10))
        except TimeoutError:
            pass  # the worker is stuck in a long statement; it stops after it

    AsyncAdapt_aiosqlite_connection.terminate = terminate  # type: ignore[method-assign]


_terminate_sqlite_at_once()


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    # SQLite leaves foreign keys unchecked unless asked, per connection; WAL lets readers
    # and the one writer work side by side.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # what is deleted or overwritten (a value sealed at the upgrade, a purge) is zeroed
    # in the file, not left in free pages
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._audit_lock = asyncio.Lock()
        """Appends to the audit chain one at a time (each reads the head it extends)."""
        self._personal: PersonalData | None = None

    def protect(self, personal: PersonalData) -> None:
        """Seal personal data with ``personal``'s keys, and search it by its blind
        indexes (see :mod:`videoid.db.personal_data`): needed before any personal
        data is written or read."""
        self._personal = personal

    @property
    def personal(self) -> PersonalData:
        """The keys given to :meth:`protect`; :class:`StorageError`
        ``personal_data_keys_missing`` without them."""
        if self._personal is None:
            raise StorageError(
                "the personal data keys are not loaded", code="personal_data_keys_missing"
            )
        return self._personal

    async def _key(self, db: AsyncSession, owner: str, *, create: bool = False) -> bytes | None:
        """``owner``'s data key (made and stored wrapped when it has none and
        ``create``); None when it has none, or it was destroyed (purged)."""
        personal = self.personal
        query = select(DataKey.wrapped_key).where(DataKey.owner == owner)
        found = (await db.execute(query)).first()
        if found is None and create:
            _, wrapped = personal.new_key(owner)
            insert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
            await db.execute(
                insert(DataKey)
                .values(
                    owner=owner,
                    key_id=personal.wrapper.key_id,
                    wrapped_key=wrapped,
                    created_at=time.time(),
                )
                .on_conflict_do_nothing(index_elements=[DataKey.owner])
            )  # a writer that made one first keeps its own
            found = (await db.execute(query)).first()
        if found is None or found[0] is None:
            return None
        return personal.unwrap(owner, bytes(found[0]))

    async def _keys(self, db: AsyncSession, owners: Iterable[str]) -> dict[str, bytes | None]:
        """The data keys of ``owners`` (None: none, or destroyed), in one query."""
        personal = self.personal
        wanted = list(set(owners))
        out: dict[str, bytes | None] = dict.fromkeys(wanted)
        if not wanted:
            return out
        for owner, wrapped in await db.execute(
            select(DataKey.owner, DataKey.wrapped_key).where(DataKey.owner.in_(wanted))
        ):
            if wrapped is not None:
                out[owner] = personal.unwrap(owner, bytes(wrapped))
        return out

    def _seal(self, key: bytes | None, owner: str, field: str, value: str) -> str:
        if key is None:
            raise StorageError(
                f"the personal data of {owner} was destroyed", code="personal_data_destroyed"
            )
        return self.personal.seal_text(key, owner, field, value)

    def _open(self, key: bytes | None, owner: str, field: str, value: str) -> str | None:
        """A sealed value opened; a value left in clear by an older version as it is
        (sealed at the next start); None when its key was destroyed."""
        if not is_sealed_text(value):
            return value
        if key is None:
            return None
        return self.personal.open_text(key, owner, field, value)

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, statement_timeout_seconds: float = 0.0
    ) -> Repository:
        """Connect and apply the migrations. Raises :class:`StorageError`."""
        engine = create_engine(url, schema, statement_timeout_seconds)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except (SQLAlchemyError, OSError) as err:
            await engine.dispose()
            raise StorageError(f"cannot open the database: {err}") from err
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- operators --------------------------------------------------------------------

    async def add_operator(self, username: str, password_hash: str, role: str, now: float) -> int:
        if role not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}")
        try:
            async with self._sessions.begin() as db:
                row = Operator(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    created_at=now,
                    disabled=False,
                )
                db.add(row)
                await db.flush()
                return row.id
        except IntegrityError as err:
            raise ValidationError(
                f"an operator named {username!r} exists already", code="username_taken"
            ) from err

    async def count_operators(self) -> int:
        async with self._sessions() as db:
            return int(await db.scalar(select(func.count()).select_from(Operator)) or 0)

    async def find_operator(
        self, *, username: str | None = None, id: int | None = None
    ) -> OperatorRecord | None:
        query = select(Operator)
        query = (
            query.where(Operator.username == username)
            if username is not None
            else query.where(Operator.id == id)
        )
        async with self._sessions() as db:
            row = await db.scalar(query)
        if row is None:
            return None
        return OperatorRecord(
            row.id,
            row.username,
            row.role,
            row.password_hash,
            bool(row.disabled),
            row.totp_secret is not None,
        )

    async def add_login(
        self,
        operator_id: int,
        token_hash: str,
        now: float,
        expires_at: float,
        *,
        password_hash: str | None = None,
    ) -> None:
        async with self._sessions.begin() as db:
            if password_hash is not None:
                await db.execute(
                    update(Operator)
                    .where(Operator.id == operator_id)
                    .values(password_hash=password_hash)
                )
            db.add(
                OperatorLogin(
                    token_hash=token_hash,
                    operator_id=operator_id,
                    created_at=now,
                    expires_at=expires_at,
                    last_seen=now,
                    verified_at=now,
                )
            )

    async def find_login(self, token_hash: str, now: float) -> OperatorRecord | None:
        async with self._sessions() as db:
            login = await db.get(OperatorLogin, token_hash)
            if login is None or login.expires_at <= now:
                return None
            operator_id = login.operator_id
        return await self.find_operator(id=operator_id)

    async def delete_login(self, token_hash: str) -> None:
        async with self._sessions.begin() as db:
            await db.execute(delete(OperatorLogin).where(OperatorLogin.token_hash == token_hash))

    # -- sessions ---------------------------------------------------------------------

    async def create_session(
        self,
        *,
        email: str,
        phone: str,
        token_hash: str,
        ready_state: str,
        now: float,
        expires_at: float,
    ) -> str:
        session_id = str(uuid.uuid4())
        personal = self.personal
        async with self._sessions.begin() as db:
            customer = Customer(
                email="",
                phone="",
                created_at=now,
                email_index=personal.contact_index("email", email),
                phone_index=personal.contact_index("phone", phone),
            )
            db.add(customer)
            await db.flush()
            owner = customer_owner(customer.id)
            key = await self._key(db, owner, create=True)
            customer.email = self._seal(key, owner, "email", email)
            customer.phone = self._seal(key, owner, "phone", phone)
            await self._key(db, session_owner(session_id), create=True)
            db.add(
                SessionRow(
                    id=session_id,
                    customer_id=customer.id,
                    state="created",
                    ready_state=ready_state,
                    invite_token_hash=token_hash,
                    invite_expires_at=expires_at,
                    operator_id=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            db.add(
                Transition(
                    session_id=session_id,
                    previous="created",
                    state="created",
                    at=now,
                    actor="provider",
                )
            )
        return session_id

    async def find_session(
        self, *, id: str | None = None, token_hash: str | None = None
    ) -> SessionRecord | None:
        query = select(SessionRow)
        query = (
            query.where(SessionRow.id == id)
            if id is not None
            else query.where(SessionRow.invite_token_hash == token_hash)
        )
        async with self._sessions() as db:
            row = await db.scalar(query)
        return None if row is None else _session_record(row)

    async def sessions_in(self, states: Iterable[str]) -> list[SessionRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(SessionRow)
                .where(SessionRow.state.in_(list(states)))
                .order_by(SessionRow.updated_at)
            )
            return [_session_record(r) for r in rows]

    async def save_events(
        self,
        session_id: str,
        events: Sequence[Event],
        *,
        state: str,
        ready_state: str,
        operator_id: int | None,
        handled_by: Iterable[int] | None = None,
        assignment: AssignmentDrawn | None = None,
    ) -> None:
        """Persist a batch of events from the state machine, and its resulting state, in
        one transaction; with the ``assignment`` drawn that led to them, if given (so
        that an offer is never on record without its draw, nor a draw without its
        offer). ``handled_by``: who handled the session now (None: unchanged). Raises
        :class:`StorageError`."""
        if not events:
            return
        try:
            async with self._audit_lock, self._sessions.begin() as db:
                if assignment is not None:
                    await self._add_assignment(db, assignment)
                last = 0.0
                for event in events:
                    if isinstance(event, StateChanged):
                        await self._append_audit(
                            db,
                            event.at,
                            "transition",
                            event.actor,
                            session_id,
                            {"from": event.previous.value, "to": event.state.value},
                        )
                        db.add(
                            Transition(
                                session_id=session_id,
                                previous=event.previous.value,
                                state=event.state.value,
                                at=event.at,
                                actor=event.actor,
                            )
                        )
                        last = max(last, event.at)
                    elif isinstance(event, DecisionMade):
                        owner = session_owner(session_id)
                        key = await self._key(db, owner, create=True)
                        await self._append_audit(
                            db,
                            event.at,
                            "decision",
                            f"operator:{event.operator_id}",
                            session_id,
                            {"outcome": event.outcome.value, "reason_code": event.reason_code},
                        )
                        db.add(
                            Decision(
                                session_id=session_id,
                                operator_id=event.operator_id,
                                outcome=event.outcome.value,
                                reason_code=event.reason_code,
                                reason_text=self._seal(
                                    key, owner, "reason_text", event.reason_text
                                ),
                                at=event.at,
                            )
                        )
                values: dict[str, Any] = {
                    "state": state,
                    "ready_state": ready_state,
                    "operator_id": operator_id,
                    "updated_at": last or SessionRow.updated_at,
                }
                if handled_by is not None:
                    values["handled_by"] = json.dumps(sorted(handled_by))
                await db.execute(
                    update(SessionRow).where(SessionRow.id == session_id).values(**values)
                )
        except SQLAlchemyError as err:
            raise StorageError(f"cannot save session {session_id}: {err}") from err

    async def save_assignment(self, draw: AssignmentDrawn) -> None:
        async with self._audit_lock, self._sessions.begin() as db:
            await self._add_assignment(db, draw)

    async def _add_assignment(self, db: AsyncSession, draw: AssignmentDrawn) -> None:
        await self._append_audit(
            db,
            draw.at,
            "assignment",
            "system",
            draw.session_id,
            {
                "operator_id": draw.operator_id,
                "candidates": list(draw.candidates),
                "index": draw.index,
            },
        )
        db.add(
            Assignment(
                session_id=draw.session_id,
                operator_id=draw.operator_id,
                candidates=json.dumps(list(draw.candidates)),
                draw_index=draw.index,
                at=draw.at,
            )
        )

    async def assignments(self, session_id: str) -> list[AssignmentDrawn]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(Assignment)
                .where(Assignment.session_id == session_id)
                .order_by(Assignment.id)
            )
            return [
                AssignmentDrawn(
                    r.session_id, r.operator_id, tuple(json.loads(r.candidates)), r.draw_index, r.at
                )
                for r in rows
            ]

    async def named_decisions(self, session_id: str) -> list[dict[str, Any]]:
        """The session's decisions with the names of who took them (for reviews and the
        evidence)."""
        async with self._sessions() as db:
            rows = await db.execute(
                select(Decision, Operator.username)
                .join(Operator, Operator.id == Decision.operator_id, isouter=True)
                .where(Decision.session_id == session_id)
                .order_by(Decision.id)
            )
            owner = session_owner(session_id)
            key = await self._key(db, owner)
            return [
                {
                    "operator_id": d.operator_id,
                    "operator": username,
                    "outcome": d.outcome,
                    "reason_code": d.reason_code,
                    "reason_text": self._open(key, owner, "reason_text", d.reason_text) or "",
                    "at": d.at,
                }
                for d, username in rows
            ]

    async def transitions(self, session_id: str) -> list[tuple[str, str, float, str]]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(Transition)
                .where(Transition.session_id == session_id)
                .order_by(Transition.id)
            )
            return [(r.previous, r.state, r.at, r.actor) for r in rows]

    async def recent_call_lengths(self, limit: int = 20) -> list[float]:
        """How long the latest ``limit`` decided calls lasted (from the call's start to
        the decision), oldest first: what the queue's estimates start from."""
        async with self._sessions() as db:
            decided = (
                await db.execute(
                    select(Decision.session_id, Decision.at)
                    .order_by(Decision.id.desc())
                    .limit(limit)
                )
            ).all()
            lengths = []
            for session_id, decided_at in reversed(decided):
                started = await db.scalar(
                    select(func.max(Transition.at)).where(
                        Transition.session_id == session_id,
                        Transition.state == "in_call",
                        Transition.at <= decided_at,
                    )
                )
                if started is not None:
                    lengths.append(float(decided_at - started))
            return lengths

    async def transitions_of_sessions_since(
        self, since: float
    ) -> list[tuple[str, str, str, float, str]]:
        """Every transition of the sessions that changed state since ``since``, in time
        order (their earlier ones too: a wait may have started the day before)."""
        async with self._sessions() as db:
            moved = select(Transition.session_id).where(Transition.at >= since).distinct()
            rows = await db.execute(
                select(
                    Transition.session_id,
                    Transition.previous,
                    Transition.state,
                    Transition.at,
                    Transition.actor,
                )
                .where(Transition.session_id.in_(moved))
                .order_by(Transition.at, Transition.id)
            )
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def decisions(self, session_id: str) -> list[DecisionRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(Decision).where(Decision.session_id == session_id).order_by(Decision.id)
            )
            owner = session_owner(session_id)
            key = await self._key(db, owner)
            return [
                DecisionRecord(
                    r.session_id,
                    r.operator_id,
                    r.outcome,
                    r.reason_code,
                    self._open(key, owner, "reason_text", r.reason_text) or "",
                    r.at,
                )
                for r in rows
            ]

    # -- onboarding -------------------------------------------------------------------

    async def find_customer(self, customer_id: int) -> CustomerRecord | None:
        """The customer, contacts opened (``""`` once purged)."""
        owner = customer_owner(customer_id)
        async with self._sessions() as db:
            row = await db.get(Customer, customer_id)
            if row is None:
                return None
            key = await self._key(db, owner)
        return CustomerRecord(
            row.id,
            self._open(key, owner, "email", row.email) or "",
            self._open(key, owner, "phone", row.phone) or "",
            row.person_key,
        )

    async def contact_owner(
        self, customer_id: int, email: str, phone: str, person_key: str
    ) -> str | None:
        """Which of ``email`` and ``phone`` belongs to another person: a customer with a
        different confirmed person key (R4). None when both are free. Compared by their
        blind indexes (an e-mail address without case)."""
        email_index = self.personal.contact_index("email", email)
        phone_index = self.personal.contact_index("phone", phone)
        async with self._sessions() as db:
            rows = (
                await db.execute(
                    select(Customer.email_index).where(
                        Customer.id != customer_id,
                        Customer.person_key.is_not(None),
                        Customer.person_key != person_key,
                        (Customer.email_index == email_index)
                        | (Customer.phone_index == phone_index),
                    )
                )
            ).all()
        for (found,) in rows:
            if found == email_index:
                return "email"
        return "phone" if rows else None

    async def update_customer(
        self, customer_id: int, *, email: str, phone: str, person_key: str
    ) -> None:
        personal = self.personal
        owner = customer_owner(customer_id)
        async with self._sessions.begin() as db:
            key = await self._key(db, owner, create=True)
            await db.execute(
                update(Customer)
                .where(Customer.id == customer_id)
                .values(
                    email=self._seal(key, owner, "email", email),
                    phone=self._seal(key, owner, "phone", phone),
                    email_index=personal.contact_index("email", email),
                    phone_index=personal.contact_index("phone", phone),
                    person_key=person_key,
                )
            )

    async def add_consent(
        self,
        session_id: str,
        *,
        document: str,
        version: str,
        language: str,
        text_sha256: str,
        client_address: str,
        now: float,
    ) -> None:
        async with self._sessions.begin() as db:
            owner = session_owner(session_id)
            key = await self._key(db, owner, create=True)
            db.add(
                Consent(
                    session_id=session_id,
                    document=document,
                    version=version,
                    language=language,
                    text_sha256=text_sha256,
                    client_address=self._seal(key, owner, "client_address", client_address[:64]),
                    at=now,
                )
            )

    async def consents(self, session_id: str) -> list[dict[str, Any]]:
        async with self._sessions() as db:
            rows = (
                await db.scalars(
                    select(Consent).where(Consent.session_id == session_id).order_by(Consent.id)
                )
            ).all()
            owner = session_owner(session_id)
            key = await self._key(db, owner)
        return [
            {
                "document": r.document,
                "version": r.version,
                "language": r.language,
                "text_sha256": r.text_sha256,
                "client_address": self._open(key, owner, "client_address", r.client_address) or "",
                "at": r.at,
            }
            for r in rows
        ]

    async def add_object(self, record: ObjectRecord) -> None:
        async with self._sessions.begin() as db:
            db.add(
                StoredObject(
                    id=record.id,
                    session_id=record.session_id,
                    kind=record.kind,
                    content_type=record.content_type,
                    size=record.size,
                    sha256=record.sha256,
                    key_id=record.key_id,
                    wrapped_key=record.wrapped_key,
                    created_at=record.created_at,
                    shredded_at=None,
                )
            )

    async def find_object(self, object_id: str) -> ObjectRecord | None:
        async with self._sessions() as db:
            row = await db.get(StoredObject, object_id)
        if row is None:
            return None
        return ObjectRecord(
            row.id,
            row.session_id,
            row.kind,
            row.content_type,
            row.size,
            row.sha256,
            row.key_id,
            row.wrapped_key,
            row.created_at,
        )

    async def objects_of(self, session_id: str) -> list[ObjectRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(StoredObject)
                .where(StoredObject.session_id == session_id)
                .order_by(StoredObject.created_at, StoredObject.id)
            )
            return [
                ObjectRecord(
                    r.id,
                    r.session_id,
                    r.kind,
                    r.content_type,
                    r.size,
                    r.sha256,
                    r.key_id,
                    r.wrapped_key,
                    r.created_at,
                )
                for r in rows
            ]

    async def add_session_token(
        self, session_id: str, kind: str, token_hash: str, now: float, expires_at: float
    ) -> None:
        async with self._sessions.begin() as db:
            db.add(
                SessionToken(
                    token_hash=token_hash,
                    session_id=session_id,
                    kind=kind,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    async def use_session_token(self, kind: str, token_hash: str, now: float) -> str | None:
        """The session a valid ``kind`` token opens, or None. A ``handover`` or
        ``contract`` token is spent by this call (one use, atomically: a second caller
        gets None)."""
        async with self._sessions.begin() as db:
            row = await db.scalar(
                select(SessionToken).where(
                    SessionToken.token_hash == token_hash, SessionToken.kind == kind
                )
            )
            if row is None or row.expires_at <= now:
                return None
            if kind in ("handover", "contract"):
                spent = await db.execute(
                    update(SessionToken)
                    .where(SessionToken.token_hash == token_hash, SessionToken.used_at.is_(None))
                    .values(used_at=now)
                )
                if spent.rowcount != 1:  # type: ignore[attr-defined]
                    return None
            return row.session_id

    async def sealed_sessions_changed_since_seal(self, seal_kind: str) -> list[tuple[str, float]]:
        """(session, last change) of the sessions changed after their newest object of
        ``seal_kind`` (their evidence seal): a state change, an object stored, their
        certificate revoked, a legal hold placed."""
        async with self._sessions() as db:
            newest = (
                select(StoredObject.session_id, func.max(StoredObject.created_at).label("at"))
                .where(StoredObject.kind == seal_kind)
                .group_by(StoredObject.session_id)
                .subquery()
            )
            changes = union_all(
                select(SessionRow.id.label("sid"), SessionRow.updated_at.label("at")),
                select(StoredObject.session_id, StoredObject.created_at).where(
                    StoredObject.kind != seal_kind
                ),
                select(CertificateRow.session_id, CertificateRow.revoked_at).where(
                    CertificateRow.revoked_at.is_not(None), CertificateRow.session_id.is_not(None)
                ),
                select(LegalHold.session_id, LegalHold.placed_at),
            ).subquery()
            last = (
                select(changes.c.sid, func.max(changes.c.at).label("at"))
                .group_by(changes.c.sid)
                .subquery()
            )
            rows = await db.execute(
                select(last.c.sid, last.c.at)
                .join(newest, newest.c.session_id == last.c.sid)
                .where(last.c.at > newest.c.at)
            )
            return [(r[0], float(r[1])) for r in rows]

    async def unsealed_sessions_in(self, states: Sequence[str], seal_kind: str) -> list[str]:
        """Sessions in one of ``states`` with no object of ``seal_kind`` (never sealed:
        the process stopped between the decision and its first seal)."""
        async with self._sessions() as db:
            sealed = select(StoredObject.id).where(
                StoredObject.session_id == SessionRow.id, StoredObject.kind == seal_kind
            )  # NOT EXISTS: an anti-join (NOT IN compares each session with every seal)
            return list(
                await db.scalars(
                    select(SessionRow.id)
                    .where(SessionRow.state.in_(states), ~sealed.exists())
                    .order_by(SessionRow.updated_at)
                )
            )

    async def write_probe(self, now: float, wait_seconds: float) -> None:
        """The health check's write: one row, one statement, committed; waiting at most
        ``wait_seconds`` for a lock, bounded by the database itself (a statement
        cancelled from Python is not stopped in SQLite's busy wait)."""
        wait_ms = max(1, round(wait_seconds * 1000))
        async with self._sessions.begin() as db:
            sqlite = self.engine.dialect.name == "sqlite"
            if sqlite:
                await db.execute(text(f"PRAGMA busy_timeout = {wait_ms}"))
            else:
                await db.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
                await db.execute(text(f"SET LOCAL statement_timeout = {wait_ms}"))
            try:
                done = await db.execute(
                    update(HealthProbe).where(HealthProbe.id == 1).values(at=now)
                )
            finally:
                if sqlite:  # the connection goes back to the pool: its usual wait
                    await db.execute(text(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}"))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise StorageError("the health check's row is missing")

    async def claim_seal(self, session_id: str, seq: int, now: float) -> bool:
        """Claim seal number ``seq`` of the session; False when another writer has."""
        try:
            async with self._sessions.begin() as db:
                db.add(EvidenceSealRow(session_id=session_id, seq=seq, at=now))
            return True
        except IntegrityError:
            return False

    async def release_seal(self, session_id: str, seq: int) -> None:
        """Give a claimed number back (the seal failed before it was written)."""
        async with self._sessions.begin() as db:
            await db.execute(
                delete(EvidenceSealRow).where(
                    EvidenceSealRow.session_id == session_id, EvidenceSealRow.seq == seq
                )
            )

    async def shred_object(self, object_id: str, now: float) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                update(StoredObject)
                .where(StoredObject.id == object_id)
                .values(wrapped_key=None, shredded_at=now)
            )

    async def reserve_attempt(
        self, session_id: str, kind: str, max_attempts: int, now: float
    ) -> tuple[int, int] | None:
        """Take one of the session's ``max_attempts`` for ``kind`` before the photo is
        analysed: (the attempt's id, attempts left after it), or None when none is left.
        The session's row is written first, which serialises concurrent reservations
        (SQLite's write lock; PostgreSQL's row lock): N parallel uploads take at most
        the limit."""
        async with self._sessions.begin() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(updated_at=SessionRow.updated_at)
            )
            used = int(
                await db.scalar(
                    select(func.count())
                    .select_from(CaptureAttempt)
                    .where(CaptureAttempt.session_id == session_id, CaptureAttempt.kind == kind)
                )
                or 0
            )
            if used >= max_attempts:
                return None
            row = CaptureAttempt(
                session_id=session_id,
                kind=kind,
                accepted=False,
                problems=json.dumps(["pending"]),
                at=now,
            )
            db.add(row)
            await db.flush()
            return int(row.id), max_attempts - used - 1

    async def finish_attempt(
        self, attempt_id: int, accepted: bool, problems: Sequence[str], now: float
    ) -> None:
        """Record a reserved attempt's outcome."""
        async with self._sessions.begin() as db:
            await db.execute(
                update(CaptureAttempt)
                .where(CaptureAttempt.id == attempt_id)
                .values(accepted=accepted, problems=json.dumps(list(problems)), at=now)
            )

    async def release_attempt(self, attempt_id: int) -> None:
        """Give a reserved attempt back (the server, not the photo, failed)."""
        async with self._sessions.begin() as db:
            await db.execute(delete(CaptureAttempt).where(CaptureAttempt.id == attempt_id))

    async def count_attempts(self, session_id: str, kind: str) -> int:
        async with self._sessions() as db:
            return int(
                await db.scalar(
                    select(func.count())
                    .select_from(CaptureAttempt)
                    .where(CaptureAttempt.session_id == session_id, CaptureAttempt.kind == kind)
                )
                or 0
            )

    async def put_result(self, session_id: str, name: str, value: Any, now: float) -> None:
        """Store a step's result, sealed with the session's key; the search's blind
        indexes follow."""
        owner = session_owner(session_id)
        async with self._sessions.begin() as db:
            key = await self._key(db, owner, create=True)
            sealed = self._seal(key, owner, f"step:{name}", json.dumps(value))
            await db.merge(StepResult(session_id=session_id, name=name, value=sealed, at=now))
            if name in SEARCHED_STEPS:
                results = await self._results(db, session_id, key, SEARCHED_STEPS)
                await index_steps(db, session_id, results, self.personal)

    async def _results(
        self,
        db: AsyncSession,
        session_id: str,
        key: bytes | None,
        names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        query = select(StepResult).where(StepResult.session_id == session_id)
        if names is not None:
            query = query.where(StepResult.name.in_(list(names)))
        owner = session_owner(session_id)
        out: dict[str, Any] = {}
        for r in (await db.scalars(query)).all():
            opened = self._open(key, owner, f"step:{r.name}", r.value)
            if opened is not None:
                out[r.name] = json.loads(opened)
        return out

    async def results(self, session_id: str) -> dict[str, Any]:
        """The session's step results by name, opened."""
        async with self._sessions() as db:
            key = await self._key(db, session_owner(session_id))
            return await self._results(db, session_id, key)

    # -- the call's evidence items ------------------------------------------------------

    async def add_item(
        self, session_id: str, kind: str, actor: str, data: dict[str, Any], now: float
    ) -> int:
        owner = session_owner(session_id)
        async with self._sessions.begin() as db:
            key = await self._key(db, owner, create=True)
            sealed = self._seal(key, owner, f"item:{kind}", json.dumps(data))
            row = CallItem(session_id=session_id, kind=kind, actor=actor[:32], at=now, data=sealed)
            db.add(row)
            await db.flush()
            if kind == "analysis":
                await store_keys(db, session_id, {"call_flags": analysis_flags(data)})
            return int(row.id)

    async def items(
        self, session_id: str, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        query = select(CallItem).where(CallItem.session_id == session_id)
        if kinds is not None:
            query = query.where(CallItem.kind.in_(list(kinds)))
        owner = session_owner(session_id)
        async with self._sessions() as db:
            rows = (await db.scalars(query.order_by(CallItem.id))).all()
            key = await self._key(db, owner) if rows else None
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "actor": r.actor,
                "at": r.at,
                "data": json.loads(self._open(key, owner, f"item:{r.kind}", r.data) or "null"),
            }
            for r in rows
        ]

    # -- one-time codes -----------------------------------------------------------------

    async def add_code(
        self,
        session_id: str,
        purpose: str,
        binding: str,
        code_hash: str,
        now: float,
        expires_at: float,
        *,
        max_sends: int | None = None,
        since: float = 0.0,
    ) -> int | None:
        """Store a new code; earlier unused codes of the same purpose stop counting.
        With ``max_sends``: None (nothing stored) when that many codes of the purpose
        were made since ``since``; the session's row is written first, which serialises
        concurrent requests (SQLite's write lock, PostgreSQL's row lock), so N parallel
        requests store at most the limit."""
        async with self._sessions.begin() as db:
            if max_sends is not None:
                await db.execute(
                    update(SessionRow)
                    .where(SessionRow.id == session_id)
                    .values(updated_at=SessionRow.updated_at)
                )
                sent = await db.scalar(
                    select(func.count())
                    .select_from(OneTimeCode)
                    .where(
                        OneTimeCode.session_id == session_id,
                        OneTimeCode.purpose == purpose,
                        OneTimeCode.created_at >= since,
                    )
                )
                if int(sent or 0) >= max_sends:
                    return None
            await db.execute(
                update(OneTimeCode)
                .where(
                    OneTimeCode.session_id == session_id,
                    OneTimeCode.purpose == purpose,
                    OneTimeCode.used_at.is_(None),
                    OneTimeCode.expires_at > now,
                )
                .values(expires_at=now)
            )
            row = OneTimeCode(
                session_id=session_id,
                purpose=purpose,
                binding=binding,
                code_hash=code_hash,
                created_at=now,
                expires_at=expires_at,
                attempts=0,
            )
            db.add(row)
            await db.flush()
            return int(row.id)

    async def latest_code(self, session_id: str, purpose: str) -> CodeRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(
                select(OneTimeCode)
                .where(OneTimeCode.session_id == session_id, OneTimeCode.purpose == purpose)
                .order_by(OneTimeCode.id.desc())
                .limit(1)
            )
        if row is None:
            return None
        return CodeRecord(
            row.id,
            row.session_id,
            row.purpose,
            row.binding,
            row.code_hash,
            row.expires_at,
            row.attempts,
            row.used_at,
        )

    async def count_codes(self, session_id: str, purpose: str, since: float) -> int:
        async with self._sessions() as db:
            return int(
                await db.scalar(
                    select(func.count())
                    .select_from(OneTimeCode)
                    .where(
                        OneTimeCode.session_id == session_id,
                        OneTimeCode.purpose == purpose,
                        OneTimeCode.created_at >= since,
                    )
                )
                or 0
            )

    async def count_code_attempt(self, code_id: int, max_attempts: int, now: float) -> int | None:
        """Consume one attempt on an unused, unexpired code in one conditional statement,
        before the code is checked (R17): the attempts counted so far, this one included;
        None when none was left (or the code is used or expired)."""
        async with self._sessions.begin() as db:
            counted = await db.scalar(
                update(OneTimeCode)
                .where(
                    OneTimeCode.id == code_id,
                    OneTimeCode.attempts < max_attempts,
                    OneTimeCode.used_at.is_(None),
                    OneTimeCode.expires_at > now,
                )
                .values(attempts=OneTimeCode.attempts + 1)
                .returning(OneTimeCode.attempts)
            )
            return None if counted is None else int(counted)

    async def use_code(self, code_id: int, now: float) -> bool:
        """Spend a code, atomically: a second caller gets False."""
        async with self._sessions.begin() as db:
            spent = await db.execute(
                update(OneTimeCode)
                .where(OneTimeCode.id == code_id, OneTimeCode.used_at.is_(None))
                .values(used_at=now)
            )
            return bool(spent.rowcount == 1)  # type: ignore[attr-defined]

    # -- the audit log ----------------------------------------------------------------

    async def append_audit(
        self, at: float, action: str, actor: str, subject: str, details: dict[str, Any]
    ) -> Entry:
        async with self._audit_lock, self._sessions.begin() as db:
            return await self._append_audit(db, at, action, actor, subject, details)

    async def _append_audit(
        self,
        db: Any,
        at: float,
        action: str,
        actor: str,
        subject: str,
        details: dict[str, Any],
    ) -> Entry:
        head = await db.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
        entry, salt = new_entry(
            _audit_entry(head) if head is not None else None,
            at,
            action[:32],
            actor[:64],
            subject[:64],
            details,
        )
        db.add(
            AuditRow(
                seq=entry.seq,
                at=entry.at,
                action=entry.action,
                actor=entry.actor,
                subject=entry.subject,
                commitment=entry.commitment,
                hash=entry.hash,
            )
        )
        db.add(AuditDetails(seq=entry.seq, salt=salt, details=json.dumps(details)))
        await db.flush()
        return entry

    async def audit_entries(self) -> list[Entry]:
        """Every entry, in storage order."""
        async with self._sessions() as db:
            rows = await db.scalars(select(AuditRow).order_by(AuditRow.id))
            return [_audit_entry(r) for r in rows]

    async def audit_of(self, subject: str) -> list[dict[str, Any]]:
        """The entries about ``subject`` (a session), with their details where kept."""
        async with self._sessions() as db:
            rows = await db.execute(
                select(AuditRow, AuditDetails.details)
                .join(AuditDetails, AuditDetails.seq == AuditRow.seq, isouter=True)
                .where(AuditRow.subject == subject)
                .order_by(AuditRow.seq)
            )
            return [
                {
                    "seq": row.seq,
                    "at": row.at,
                    "action": row.action,
                    "actor": row.actor,
                    "details": None if details is None else json.loads(details),
                }
                for row, details in rows
            ]

    async def audit_details(self) -> dict[int, tuple[bytes, dict[str, Any]]]:
        async with self._sessions() as db:
            rows = await db.scalars(select(AuditDetails))
            return {r.seq: (bytes(r.salt), json.loads(r.details)) for r in rows}

    async def erase_audit_details(self, seqs: Iterable[int]) -> int:
        """Erase entries' details (retention); the chain stays valid."""
        async with self._sessions.begin() as db:
            done = await db.execute(delete(AuditDetails).where(AuditDetails.seq.in_(list(seqs))))
            return int(done.rowcount)  # type: ignore[attr-defined]

    async def add_anchor(self, anchor: AuditAnchor) -> None:
        async with self._sessions.begin() as db:
            db.add(AuditAnchorRow(**dataclasses.asdict(anchor)))

    async def anchors(self) -> list[AuditAnchor]:
        """The audit log's anchors, oldest first."""
        async with self._sessions() as db:
            rows = await db.scalars(select(AuditAnchorRow).order_by(AuditAnchorRow.id))
            return [
                AuditAnchor(
                    r.seq,
                    r.hash,
                    r.at,
                    r.reason,
                    bytes(r.signature),
                    None if r.timestamp is None else bytes(r.timestamp),
                )
                for r in rows
            ]

    # -- recordings -------------------------------------------------------------------

    async def add_recording(
        self,
        recording_id: str,
        session_id: str,
        file: str,
        key_id: str,
        wrapped_key: bytes,
        now: float,
    ) -> None:
        async with self._sessions.begin() as db:
            db.add(
                RecordingRow(
                    id=recording_id,
                    session_id=session_id,
                    file=file,
                    key_id=key_id,
                    wrapped_key=wrapped_key,
                    started_at=now,
                    status="recording",
                    summary="{}",
                )
            )

    async def finish_recording(
        self, recording_id: str, status: str, summary: dict[str, Any], now: float
    ) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                update(RecordingRow)
                .where(RecordingRow.id == recording_id)
                .values(status=status, summary=json.dumps(summary), ended_at=now)
            )

    async def interrupt_recordings(self, now: float) -> list[tuple[str, str]]:
        """After a restart: recordings left open were interrupted; each is closed as
        ``interrupted`` and audited (``recording_interrupted``). Returns their
        (recording, session)."""
        async with self._audit_lock, self._sessions.begin() as db:
            rows = [
                (r[0], r[1])
                for r in await db.execute(
                    select(RecordingRow.id, RecordingRow.session_id).where(
                        RecordingRow.status == "recording"
                    )
                )
            ]
            if rows:
                await db.execute(
                    update(RecordingRow)
                    .where(RecordingRow.id.in_([r[0] for r in rows]))
                    .values(status="interrupted", ended_at=now)
                )
            for recording_id, session_id in rows:
                await self._append_audit(
                    db,
                    now,
                    "recording_interrupted",
                    "system",
                    session_id,
                    {"recording": recording_id},
                )
            return rows

    async def latest_wrapped_keys(self) -> list[tuple[str, str, str, bytes]]:
        """The newest object's and the newest recording's wrapped data key, as
        (what, id, kind, wrapped): enough to tell whether a master key is this
        deployment's."""
        out: list[tuple[str, str, str, bytes]] = []
        async with self._sessions() as db:
            obj = await db.scalar(
                select(StoredObject)
                .where(StoredObject.wrapped_key.is_not(None))
                .order_by(StoredObject.created_at.desc())
                .limit(1)
            )
            if obj is not None and obj.wrapped_key is not None:
                out.append(("object", obj.id, obj.kind, bytes(obj.wrapped_key)))
            rec = await db.scalar(
                select(RecordingRow)
                .where(RecordingRow.wrapped_key.is_not(None))
                .order_by(RecordingRow.started_at.desc())
                .limit(1)
            )
            if rec is not None and rec.wrapped_key is not None:
                out.append(("recording", rec.id, "", bytes(rec.wrapped_key)))
        return out

    async def find_recording(self, recording_id: str) -> dict[str, Any] | None:
        async with self._sessions() as db:
            row = await db.get(RecordingRow, recording_id)
            if row is None:
                return None
            return {
                "id": row.id,
                "session_id": row.session_id,
                "file": row.file,
                "key_id": row.key_id,
                "wrapped_key": row.wrapped_key,
                "status": row.status,
            }

    async def recordings(self, session_id: str) -> list[dict[str, Any]]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(RecordingRow)
                .where(RecordingRow.session_id == session_id)
                .order_by(RecordingRow.started_at)
            )
            return [
                {
                    "id": r.id,
                    "file": r.file,
                    "key_id": r.key_id,
                    "wrapped_key": r.wrapped_key,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "status": r.status,
                    "summary": json.loads(r.summary),
                }
                for r in rows
            ]

    # -- retention ----------------------------------------------------------------------

    async def place_hold(self, session_id: str, reason: str, by: str, now: float) -> None:
        async with self._sessions.begin() as db:
            await db.merge(
                LegalHold(session_id=session_id, reason=reason, placed_by=by, placed_at=now)
            )

    async def release_hold(self, session_id: str) -> bool:
        async with self._sessions.begin() as db:
            done = await db.execute(delete(LegalHold).where(LegalHold.session_id == session_id))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def search_sessions(
        self,
        where: SessionFilter,
        *,
        after: tuple[float, str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The sessions ``where`` selects, newest first (then by id), at most ``limit``,
        starting after the session ``after`` (its created_at and id), with what a search
        shows: the deciding operators, the onboarding results (personal data, document
        warnings, the selfie's match), the call's gaps and last analysis, the
        recordings' states and any legal hold. Every filter runs in the database; six
        queries, whatever the count."""
        query = search_page(where, after=after, limit=limit)
        async with self._sessions() as db:
            sessions = (await db.scalars(query)).all()
            ids = [r.id for r in sessions]
            out: dict[str, dict[str, Any]] = {
                r.id: {
                    "session_id": r.id,
                    "state": r.state,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                    "purged_at": r.purged_at,
                    "operator_id": r.operator_id,
                    "deciders": [],
                    "results": {},
                    "gaps": 0,
                    "analysis": None,
                    "recordings": [],
                    "hold": False,
                }
                for r in sessions
            }
            if not ids:
                return []
            for session_id, outcome, username in await db.execute(
                select(Decision.session_id, Decision.outcome, Operator.username)
                .join(Operator, Operator.id == Decision.operator_id, isouter=True)
                .where(Decision.session_id.in_(ids))
                .order_by(Decision.id)
            ):
                out[session_id]["deciders"].append({"operator": username, "outcome": outcome})
            keys = await self._keys(db, [session_owner(i) for i in ids])
            for result in await db.scalars(
                select(StepResult).where(
                    StepResult.session_id.in_(ids),
                    StepResult.name.in_(["personal_data", "document", "selfie"]),
                )
            ):
                owner = session_owner(result.session_id)
                opened = self._open(keys[owner], owner, f"step:{result.name}", result.value)
                if opened is not None:
                    out[result.session_id]["results"][result.name] = json.loads(opened)
            for item in await db.scalars(
                select(CallItem)
                .where(CallItem.session_id.in_(ids), CallItem.kind.in_(["gap", "analysis"]))
                .order_by(CallItem.id)
            ):
                if item.kind == "gap":
                    out[item.session_id]["gaps"] += 1
                else:
                    owner = session_owner(item.session_id)
                    opened = self._open(keys[owner], owner, "item:analysis", item.data)
                    out[item.session_id]["analysis"] = (
                        None if opened is None else json.loads(opened)
                    )
            for session_id, status in await db.execute(
                select(RecordingRow.session_id, RecordingRow.status).where(
                    RecordingRow.session_id.in_(ids)
                )
            ):
                out[session_id]["recordings"].append(status)
            for session_id in await db.scalars(
                select(LegalHold.session_id).where(LegalHold.session_id.in_(ids))
            ):
                out[session_id]["hold"] = True
        return list(out.values())

    async def count_sessions(self, where: SessionFilter) -> int:
        """How many sessions ``where`` selects, exactly."""
        query = select(func.count()).select_from(SessionRow).where(*search_conditions(where))
        async with self._sessions() as db:
            return int(await db.scalar(query) or 0)

    # -- certificates ---------------------------------------------------------------------

    async def add_certificate(self, record: CertificateRecord) -> None:
        """Store a certificate; a session's (a customer's: its subject names the person)
        with its subject and DER sealed by the session's key."""
        async with self._sessions.begin() as db:
            values = dict(record.__dict__)
            if record.session_id is not None:
                owner = session_owner(record.session_id)
                key = await self._key(db, owner, create=True)
                if key is None:
                    raise StorageError(
                        f"the personal data of {owner} was destroyed",
                        code="personal_data_destroyed",
                    )
                values["subject"] = self._seal(
                    key, owner, f"subject:{record.serial}", record.subject
                )
                values["der"] = self.personal.seal_bytes(
                    key, owner, f"der:{record.serial}", record.der
                )
            db.add(CertificateRow(**values))

    async def _opened_certificates(
        self, db: AsyncSession, rows: Sequence[CertificateRow]
    ) -> list[CertificateRecord]:
        """Records of ``rows``, a session's opened (subject ``""`` and no DER once its
        key is destroyed)."""
        keys = await self._keys(db, [session_owner(r.session_id) for r in rows if r.session_id])
        out = []
        for row in rows:
            record = _certificate(row)
            if row.session_id is not None:
                owner = session_owner(row.session_id)
                key = keys[owner]
                der = record.der
                if is_sealed_bytes(der):
                    der = (
                        b""
                        if key is None
                        else self.personal.open_bytes(key, owner, f"der:{row.serial}", der)
                    )
                subject = self._open(key, owner, f"subject:{row.serial}", record.subject)
                record = dataclasses.replace(record, subject=subject or "", der=der)
            out.append(record)
        return out

    async def certificates(
        self, *, kind: str | None = None, session_id: str | None = None, revoked: bool = False
    ) -> list[CertificateRecord]:
        query = select(CertificateRow)
        if kind is not None:
            query = query.where(CertificateRow.kind == kind)
        if session_id is not None:
            query = query.where(CertificateRow.session_id == session_id)
        if revoked:
            query = query.where(CertificateRow.status == "revoked")
        async with self._sessions() as db:
            rows = (await db.scalars(query.order_by(CertificateRow.created_at))).all()
            return await self._opened_certificates(db, rows)

    async def find_certificate(self, serial: str) -> CertificateRecord | None:
        async with self._sessions() as db:
            row = await db.get(CertificateRow, serial)
            return None if row is None else (await self._opened_certificates(db, [row]))[0]

    async def revoke_certificate(self, serial: str, reason: str, now: float) -> bool:
        """Mark it revoked; False when it is unknown or already revoked."""
        async with self._sessions.begin() as db:
            done = await db.execute(
                update(CertificateRow)
                .where(CertificateRow.serial == serial, CertificateRow.status == "good")
                .values(status="revoked", revoked_at=now, revocation_reason=reason)
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def certificate_urls(self) -> list[str]:
        """Every base of CRL, OCSP and caIssuers addresses written in a certificate."""
        async with self._sessions() as db:
            found = await db.scalars(
                select(CertificateRow.ca_url).where(CertificateRow.ca_url.is_not(None)).distinct()
            )
            return [u for u in found if u]

    async def pin_state(self, serial: str) -> dict[str, Any] | None:
        async with self._sessions() as db:
            row = await db.get(SignaturePin, serial)
            if row is None:
                return None
            return {
                "pin_hash": row.pin_hash,
                "puk_hash": row.puk_hash,
                "failures": row.failures,
                "puk_failures": row.puk_failures,
                "locked_at": row.locked_at,
                "blocked_at": row.blocked_at,
                "changed_at": row.changed_at,
            }

    async def save_pin_state(self, serial: str, state: dict[str, Any], *, new: bool) -> bool:
        """Store a PIN state; with ``new``, only if none is there yet (False if one is)."""
        async with self._sessions.begin() as db:
            if new:
                if await db.get(SignaturePin, serial) is not None:
                    return False
                db.add(SignaturePin(serial=serial, **state))
                return True
            await db.execute(
                update(SignaturePin).where(SignaturePin.serial == serial).values(**state)
            )
            return True

    async def reserve_pin_attempt(self, serial: str, limit: int, now: float) -> int | None:
        """Consume one PIN attempt before the PIN is checked, in one conditional statement
        (R17): the failures counted, this attempt included (the last one locks the key at
        once, ``pin_passed`` unlocks it if the PIN was right); None when the key is locked
        or blocked, and nothing may be checked."""
        async with self._sessions.begin() as db:
            failures = await db.scalar(
                update(SignaturePin)
                .where(
                    SignaturePin.serial == serial,
                    SignaturePin.failures < limit,
                    SignaturePin.locked_at.is_(None),
                    SignaturePin.blocked_at.is_(None),
                )
                .values(
                    failures=SignaturePin.failures + 1,
                    locked_at=case((SignaturePin.failures + 1 >= limit, now), else_=None),
                )
                .returning(SignaturePin.failures)
            )
            return None if failures is None else int(failures)

    async def pin_passed(self, serial: str, pin_hash: str) -> bool:
        """The PIN checked against ``pin_hash`` was right: its failures forgiven (False if
        the PIN was changed meanwhile, or the key blocked)."""
        async with self._sessions.begin() as db:
            done = await db.execute(
                update(SignaturePin)
                .where(
                    SignaturePin.serial == serial,
                    SignaturePin.pin_hash == pin_hash,
                    SignaturePin.blocked_at.is_(None),
                )
                .values(failures=0, locked_at=None)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    async def reserve_puk_attempt(self, serial: str, limit: int, now: float) -> int | None:
        """Consume one PUK attempt before the PUK is checked, in one conditional statement
        (R17): the PUK failures counted, this one included (the last one blocks the key
        at once, ``puk_passed`` lifts it if the PUK was right); None when blocked."""
        async with self._sessions.begin() as db:
            failures = await db.scalar(
                update(SignaturePin)
                .where(
                    SignaturePin.serial == serial,
                    SignaturePin.puk_failures < limit,
                    SignaturePin.blocked_at.is_(None),
                )
                .values(
                    puk_failures=SignaturePin.puk_failures + 1,
                    blocked_at=case((SignaturePin.puk_failures + 1 >= limit, now), else_=None),
                )
                .returning(SignaturePin.puk_failures)
            )
            return None if failures is None else int(failures)

    async def puk_passed(self, serial: str, puk_hash: str, pin_hash: str, now: float) -> bool:
        """The PUK checked against ``puk_hash`` was right: the new PIN (its hash) set and
        every counter and lock cleared (False if there is no such PIN state)."""
        async with self._sessions.begin() as db:
            done = await db.execute(
                update(SignaturePin)
                .where(SignaturePin.serial == serial, SignaturePin.puk_hash == puk_hash)
                .values(
                    pin_hash=pin_hash,
                    failures=0,
                    puk_failures=0,
                    locked_at=None,
                    blocked_at=None,
                    changed_at=now,
                )
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    async def holds(self) -> set[str]:
        async with self._sessions() as db:
            return set(await db.scalars(select(LegalHold.session_id)))

    async def sessions_ended_before(self, states: Iterable[str], before: float) -> list[str]:
        """Sessions in ``states`` whose last change is older than ``before``, not purged."""
        async with self._sessions() as db:
            return list(
                await db.scalars(
                    select(SessionRow.id).where(
                        SessionRow.state.in_(list(states)),
                        SessionRow.updated_at < before,
                        SessionRow.purged_at.is_(None),
                    )
                )
            )

    async def purge_session_data(self, session_id: str, now: float) -> dict[str, int]:
        """Destroy what names the person (after the objects' and recordings' keys are
        gone): the session's and its customer's data keys (whatever they sealed, the
        decisions' reasons and the certificate included, no longer opens), onboarding
        results, call items, the customer's contact details and their blind indexes,
        the consents' client address, the audit details about the session. The
        session, its transitions and decisions and the audit chain stay."""
        async with self._audit_lock, self._sessions.begin() as db:
            row = await db.get(SessionRow, session_id)
            if row is None:
                raise StorageError("no such session", code="session_not_found")
            subject_seqs = select(AuditRow.seq).where(AuditRow.subject == session_id)
            erased = await db.execute(
                delete(AuditDetails).where(AuditDetails.seq.in_(subject_seqs))
            )
            await db.execute(delete(StepResult).where(StepResult.session_id == session_id))
            await db.execute(delete(SessionSearch).where(SessionSearch.session_id == session_id))
            items = await db.execute(delete(CallItem).where(CallItem.session_id == session_id))
            # the codes' bindings name contacts (by blind index) and documents' digests
            await db.execute(delete(OneTimeCode).where(OneTimeCode.session_id == session_id))
            await db.execute(
                update(Consent).where(Consent.session_id == session_id).values(client_address="")
            )
            await db.execute(
                update(Customer)
                .where(Customer.id == row.customer_id)
                .values(email="", phone="", email_index=None, phone_index=None, person_key=None)
            )
            owners = [session_owner(session_id), customer_owner(row.customer_id)]
            await db.execute(
                update(DataKey)
                .where(DataKey.owner.in_(owners), DataKey.wrapped_key.is_not(None))
                .values(wrapped_key=None, shredded_at=now)
            )
            if self._personal is not None:
                for owner in owners:
                    self._personal.forget(owner)
            await db.execute(
                update(RecordingRow)
                .where(RecordingRow.session_id == session_id)
                .values(wrapped_key=None)
            )
            row.purged_at = now
            counts = {
                "audit_details": int(erased.rowcount),  # type: ignore[attr-defined]
                "call_items": int(items.rowcount),  # type: ignore[attr-defined]
            }
            await self._append_audit(db, now, "retention_purge", "system", session_id, counts)
            return counts

    # -- data left in clear by older versions ---------------------------------------------

    async def seal_plain_rows(self, now: float, *, batch: int = 500) -> dict[str, int]:
        """Seal what versions before migration 0015 stored in clear (onboarding
        results, contacts, call items, decisions' reasons, customers' certificates),
        derive the search's blind indexes again, and destroy at once the keys made for
        sessions already purged. Idempotent; in batches of ``batch`` rows, each in its
        own transaction. On SQLite the write-ahead log is then emptied, so that no
        page with a plain value survives there. Returns what was sealed, per table."""
        personal = self.personal
        counts = {
            "step_results": 0, "consents": 0, "call_items": 0, "decisions": 0, "customers": 0
        }  # fmt: skip
        counts |= {"certificates": 0, "session_search": 0, "person_keys": 0}
        # R4's person keys from before: an unkeyed SHA-256 (64 digits, which anyone could
        # confirm by trying names and birth dates) becomes that digest's blind index
        async with self._sessions.begin() as db:
            old_keys = (
                await db.execute(
                    select(Customer.id, Customer.person_key).where(
                        func.length(Customer.person_key) == 64
                    )
                )
            ).all()
            for customer_id, old_key in old_keys:
                await db.execute(
                    update(Customer)
                    .where(Customer.id == customer_id)
                    .values(person_key=personal.index("person", str(old_key)))
                )
            counts["person_keys"] = len(old_keys)
        counts["step_results"] = await self._seal_column(
            StepResult.value, lambda r: f"step:{r.name}", batch
        )
        counts["call_items"] = await self._seal_column(
            CallItem.data, lambda i: f"item:{i.kind}", batch
        )
        counts["consents"] = await self._seal_column(
            Consent.client_address, lambda _: "client_address", batch, Consent.client_address != ""
        )
        counts["decisions"] = await self._seal_column(
            Decision.reason_text, lambda _: "reason_text", batch
        )
        unindexed = select(Customer).where(
            Customer.email_index.is_(None), (Customer.email != "") | (Customer.phone != "")
        )
        while customers := await self._plain_batch(unindexed, batch):
            async with self._sessions.begin() as db:
                for c in customers:
                    owner = customer_owner(c.id)
                    key = await self._key(db, owner, create=True)
                    email, phone = c.email, c.phone
                    await db.execute(
                        update(Customer)
                        .where(Customer.id == c.id)
                        .values(
                            email=self._seal(key, owner, "email", email),
                            phone=self._seal(key, owner, "phone", phone),
                            email_index=personal.contact_index("email", email),
                            phone_index=personal.contact_index("phone", phone),
                        )
                    )
            counts["customers"] += len(customers)
        plain = CertificateRow.session_id.is_not(None) & ~CertificateRow.subject.startswith(
            TEXT_PREFIX, autoescape=True
        )
        while certificates := await self._plain_batch(select(CertificateRow).where(plain), batch):
            async with self._sessions.begin() as db:
                for c in certificates:
                    assert c.session_id is not None
                    owner = session_owner(c.session_id)
                    key = await self._key(db, owner, create=True)
                    assert key is not None
                    der = bytes(c.der)
                    if not is_sealed_bytes(der):
                        der = personal.seal_bytes(key, owner, f"der:{c.serial}", der)
                    subject = self._seal(key, owner, f"subject:{c.serial}", c.subject)
                    await db.execute(
                        update(CertificateRow)
                        .where(CertificateRow.serial == c.serial)
                        .values(subject=subject, der=der)
                    )
            counts["certificates"] += len(certificates)
        stale = select(SessionSearch).where(SessionSearch.blind.is_(False))
        while searched := await self._plain_batch(stale, batch):
            async with self._sessions.begin() as db:
                for row in searched:
                    key = await self._key(db, session_owner(row.session_id))
                    results = await self._results(db, row.session_id, key, SEARCHED_STEPS)
                    await index_steps(db, row.session_id, results, personal)
            counts["session_search"] += len(searched)
        if not any(counts.values()):
            return counts
        async with self._sessions.begin() as db:  # keys just made for purged sessions
            purged = select(SessionRow.id).where(SessionRow.purged_at.is_not(None))
            prefix = "session:"
            await db.execute(
                update(DataKey)
                .where(
                    DataKey.wrapped_key.is_not(None),
                    DataKey.owner.startswith(prefix),
                    func.substr(DataKey.owner, len(prefix) + 1).in_(purged),
                )
                .values(wrapped_key=None, shredded_at=now)
            )
        if self.engine.dialect.name == "sqlite":
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    async def _seal_column(
        self, column: Any, field: Callable[[Any], str], batch: int, also: Any = None
    ) -> int:
        """Seal a session's text column left in clear (rows matching ``also``), each
        value under its session's key as ``field(row)``; how many rows."""
        model = column.class_
        plain = ~column.startswith(TEXT_PREFIX, autoescape=True)
        if also is not None:
            plain &= also
        done = 0
        while rows := await self._plain_batch(select(model).where(plain), batch):
            async with self._sessions.begin() as db:
                for row in rows:
                    owner = session_owner(row.session_id)
                    key = await self._key(db, owner, create=True)
                    sealed = self._seal(key, owner, field(row), getattr(row, column.key))
                    this = [c == getattr(row, c.key) for c in model.__table__.primary_key]
                    await db.execute(update(model).where(*this).values({column.key: sealed}))
            done += len(rows)
        return done

    async def _plain_batch(self, query: Any, batch: int) -> list[Any]:
        async with self._sessions() as db:
            return list((await db.scalars(query.limit(batch))).all())


def _audit_entry(row: AuditRow) -> Entry:
    return Entry(row.seq, row.at, row.action, row.actor, row.subject, row.commitment, row.hash)


def _certificate(row: CertificateRow) -> CertificateRecord:
    return CertificateRecord(
        row.serial,
        row.kind,
        row.session_id,
        row.subject,
        row.key_label,
        bytes(row.der),
        row.not_before,
        row.not_after,
        row.status,
        row.revoked_at,
        row.revocation_reason,
        row.created_at,
        row.ca_url,
    )


def _session_record(row: SessionRow) -> SessionRecord:
    return SessionRecord(
        row.id,
        row.customer_id,
        row.state,
        row.ready_state,
        row.invite_expires_at,
        row.operator_id,
        row.created_at,
        row.updated_at,
        frozenset(json.loads(row.handled_by or "[]")),
    )
