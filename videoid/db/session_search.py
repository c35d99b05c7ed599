"""What a compliance search filters on, in SQL: the filter, the search keys kept per
session, and the conditions that select sessions by them.

Names and document numbers are matched on keyed blind indexes derived when onboarding
stores its results (``session_search``, migrations 0014 and 0015): HMAC-SHA256 under
the index key (:class:`~videoid.db.personal_data.PersonalData`) of each word of
the name as the machine readable zone writes it (so "Müller" finds "MUELLER"), and of
the document number without separators. A search derives the same indexes from the
query and compares them with the stored ones: it never reads the personal data, and a
name matches by whole words.

Flags that come from onboarding and from the call's last analysis are kept there too,
as space-delimited words; the others are read from their tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, false, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from .models import (
    CallItem,
    Decision,
    LegalHold,
    RecordingRow,
    SessionRow,
    SessionSearch,
)
from .personal_data import PersonalData, name_words

STEPS = ("personal_data", "document", "selfie")
"""The onboarding results the keys are derived from."""

_LIKE_ESCAPE = "\\"


def query_words(text: str) -> tuple[str, ...]:
    """The normalised words of a name search (see
    :func:`~videoid.db.personal_data.name_words`); a typed word with no letter a
    name can have (``%``) gives ``""``, which matches nothing."""
    out: list[str] = []
    for part in text.split():
        out.extend(name_words(part) or [""])
    return tuple(out)


def escape_like(text: str) -> str:
    """``text`` for a LIKE pattern with ``ESCAPE '\\'``: ``%`` and ``_`` match themselves."""
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )


def _words(flags: Sequence[str]) -> str:
    # padded, so that LIKE '% name %' finds a whole flag and never a part of one
    return " " + " ".join(sorted(set(flags))) + " " if flags else ""


@dataclass(frozen=True)
class StepKeys:
    """The keys onboarding's results give a session."""

    name: str
    """The blind indexes of the given names' and surname's words, ``""`` when unknown."""
    document: str
    """The document number's blind index, ``""`` when unknown."""
    flags: str
    """Onboarding's flags (``data_edited``, ``face_mismatch``, the document's warnings),
    space-delimited with a space at each end."""

    @classmethod
    def of(cls, results: Mapping[str, Any], personal: PersonalData) -> StepKeys:
        """From the session's stored results, by step name (as
        ``Repository.results`` returns them): the name and the document number as blind
        indexes, and the flags."""
        fields = (results.get("personal_data") or {}).get("fields") or {}
        document = results.get("document") or {}
        mrz = document.get("mrz") or {}
        given = str(fields.get("given_names") or mrz.get("given_names") or "")
        surname = str(fields.get("surname") or mrz.get("surname") or "")
        number = str(fields.get("document_number") or mrz.get("document_number") or "")
        return cls(
            personal.name_index(f"{given} {surname}"),
            personal.document_index(number),
            step_flags(results),
        )


def step_flags(results: Mapping[str, Any]) -> str:
    """Onboarding's flags of the session's stored results, as :attr:`StepKeys.flags`
    writes them."""
    document = results.get("document") or {}
    flags = [str(w) for w in document.get("warnings", ())]
    if (results.get("personal_data") or {}).get("edited"):
        flags.append("data_edited")
    match = (results.get("selfie") or {}).get("match")
    if match is not None and not match.get("match"):
        flags.append("face_mismatch")
    return _words(flags)


def analysis_flags(summary: Mapping[str, Any]) -> str:
    """The flags of a call's analysis summary, as :attr:`StepKeys.flags` writes them."""
    return _words([str(f) for f in (summary.get("signals") or {}).get("flags", ())])


async def store_keys(db: AsyncSession, session_id: str, values: Mapping[str, str | bool]) -> None:
    """Set some of a session's keys in ``db``'s transaction, creating its row if need be;
    only the columns named are written, so onboarding and the call never undo each
    other's."""
    insert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
    statement = insert(SessionSearch).values(session_id=session_id, **values)
    await db.execute(
        statement.on_conflict_do_update(index_elements=[SessionSearch.session_id], set_=values)
    )


async def index_steps(
    db: AsyncSession, session_id: str, results: Mapping[str, Any], personal: PersonalData
) -> None:
    """Derive the session's keys again in ``db`` from its onboarding ``results``
    (opened, by step name)."""
    keys = StepKeys.of(results, personal)
    await store_keys(
        db,
        session_id,
        {"name": keys.name, "document": keys.document, "step_flags": keys.flags, "blind": True},
    )


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions a search wants; every field narrows, none means all."""

    since: float | None = None
    """Created at or after (epoch seconds)."""
    until: float | None = None
    """Created before (epoch seconds)."""
    states: tuple[str, ...] = ()
    operator_id: int | None = None
    """Assigned to or decided by this operator."""
    session_ids: tuple[str, ...] = ()
    name_words: tuple[str, ...] = ()
    """The blind index of each word looked for (``PersonalData.word_index`` of
    :func:`query_words`); each must be a whole word of the name. An empty one (a word
    with no letter a name has) matches nothing."""
    document: str | None = None
    """The blind index of the number looked for (``PersonalData.document_index``),
    matched whole; empty matches nothing."""
    flag: str | None = None
    """A flag's name, as the search results show it."""


class _Unindexed(ColumnElement[str]):
    """A session's id that SQLite may not look up by its index (``+id``): a filter's
    ``id IN (…)`` then never drives the query. Otherwise SQLite starts from the IN
    list and sorts every match (0.1 s for 50 000 of 100 000); walking the order's index
    (created_at, id) and stopping at the page's end costs at most one pass over it,
    whatever the filter."""

    inherit_cache = True
    type = String()


@compiles(_Unindexed)
def _plain(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(SessionRow.__table__.c.id, **kw))


@compiles(_Unindexed, "sqlite")
def _plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + str(compiler.process(SessionRow.__table__.c.id, **kw))


_Id = ColumnElement[str]


def _keyed(sid: _Id, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return sid.in_(select(SessionSearch.session_id).where(condition))


def _flag(sid: _Id, flag: str) -> ColumnElement[bool]:
    pattern = f"% {escape_like(flag)} %"
    found: list[ColumnElement[bool]] = [
        _keyed(
            sid,
            or_(
                SessionSearch.step_flags.like(pattern, escape=_LIKE_ESCAPE),
                SessionSearch.call_flags.like(pattern, escape=_LIKE_ESCAPE),
            ),
        )
    ]
    decided = select(Decision.session_id)
    recorded = select(RecordingRow.session_id)
    if flag == "reconnected":
        found.append(sid.in_(select(CallItem.session_id).where(CallItem.kind == "gap")))
    elif flag in ("recording_interrupted", "recording_failed"):
        status = flag.removeprefix("recording_")
        found.append(sid.in_(recorded.where(RecordingRow.status == status)))
    elif flag == "no_recording":
        found.append(and_(sid.in_(decided), sid.not_in(recorded)))
    elif flag == "four_eyes":
        found.append(sid.in_(decided.group_by(Decision.session_id).having(func.count() > 1)))
    elif flag == "legal_hold":
        found.append(sid.in_(select(LegalHold.session_id)))
    elif flag == "purged":
        found.append(SessionRow.purged_at.is_not(None))
    return or_(*found)


def conditions(where: SessionFilter, *, ordered: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE clause of ``where`` over ``identification_sessions``; ``ordered`` for
    a page in the search's order (see :class:`_Unindexed`), not for a count."""
    sid: _Id = _Unindexed() if ordered else SessionRow.__table__.c.id
    out: list[ColumnElement[bool]] = []
    if where.since is not None:
        out.append(SessionRow.created_at >= where.since)
    if where.until is not None:
        out.append(SessionRow.created_at < where.until)
    if where.states:
        out.append(SessionRow.state.in_(where.states))
    if where.session_ids:
        out.append(SessionRow.id.in_(where.session_ids))
    if where.operator_id is not None:
        handled = select(Decision.session_id).where(Decision.operator_id == where.operator_id)
        out.append(or_(SessionRow.operator_id == where.operator_id, sid.in_(handled)))
    if where.name_words:
        if not all(where.name_words):
            out.append(false())
        else:
            out.append(
                _keyed(
                    sid,
                    and_(
                        *(
                            SessionSearch.name.like(f"% {escape_like(w)} %", escape=_LIKE_ESCAPE)
                            for w in where.name_words
                        )
                    ),
                )
            )
    if where.document is not None:
        out.append(
            _keyed(sid, SessionSearch.document == where.document) if where.document else false()
        )
    if where.flag:
        out.append(_flag(sid, where.flag))
    return out


def page(
    where: SessionFilter, *, after: tuple[float, str] | None, limit: int | None
) -> Select[SessionRow]:
    """The query of one page: newest first (then by id), after the session ``after``
    names (its created_at and id), at most ``limit``."""
    query = select(SessionRow).where(*conditions(where, ordered=True))
    if after is not None:
        at, session_id = after
        query = query.where(
            or_(
                SessionRow.created_at < at,
                and_(SessionRow.created_at == at, SessionRow.id < session_id),
            )
        )
    return query.order_by(SessionRow.created_at.desc(), SessionRow.id.desc()).limit(limit)
