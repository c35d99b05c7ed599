"""Finding sessions for a compliance officer: by date, outcome, operator, the
customer's name or document number, and flags.

Every filter runs in the database, paged, with an exact total: names and document
numbers are matched on keys derived from what onboarding stored (names as the MRZ
writes them, so "Müller" finds "MUELLER" and "Mueller"; see ``db.session_search``),
flags on what onboarding, the call and retention recorded."""

from __future__ import annotations

import base64
import datetime
import math
import re
from dataclasses import dataclass
from typing import Any

from ..db import Repository
from ..db.session_search import SessionFilter, query_words
from ..errors import ValidationError

OUTCOMES: dict[str, tuple[str, ...]] = {
    "approved": ("approved", "certificate_requested", "contract_signed", "completed"),
    "rejected": ("rejected",),
    "suspended": ("suspended",),
    "completed": ("completed",),
    "abandoned": ("abandoned",),
    "expired": ("expired",),
    "open": (
        "created",
        "consented",
        "documents_captured",
        "data_confirmed",
        "selfie_taken",
        "av_tested",
        "waiting",
        "assigned",
        "in_call",
    ),
}
"""What each outcome a search offers means in session states. "approved" includes the
sessions that went on to their certificate."""

FLAGS = (
    "data_edited",
    "face_mismatch",
    "reconnected",
    "recording_interrupted",
    "recording_failed",
    "no_recording",
    "four_eyes",
    "legal_hold",
    "purged",
    "document_expired",
    "mrz_check_failed",
    "country_mismatch",
    "document_type_mismatch",
    "virtual_camera",
    "several_faces",
    "frames_frozen",
    "timestamps_too_regular",
    "no_blink",
)
"""The flags a search offers; the call's analysis may add others, shown as they are."""

PAGE_SIZE = 50
"""Sessions per page unless a search asks for another size."""
MAX_PAGE_SIZE = 200
_SESSION = re.compile(r"[0-9a-f-]{36}")


@dataclass(frozen=True)
class Query:
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    operator: str | None = None
    name: str | None = None
    document: str | None = None
    flag: str | None = None
    page_size: int = PAGE_SIZE
    """At most this many sessions in one answer."""
    after: str | None = None
    """The cursor of the page to answer (a previous answer's ``next``); None for the
    first page."""

    @classmethod
    def from_params(cls, params: Any) -> Query:
        """From a request's query string; a bad value is a ``ValidationError`` naming
        its field."""

        def text(name: str, limit: int) -> str | None:
            value = str(params.get(name, "")).strip()
            if len(value) > limit:
                raise ValidationError(
                    f"{name}: at most {limit} characters", code="invalid_search", field=name
                )
            return value or None

        def day(name: str) -> datetime.date | None:
            value = text(name, 10)
            if value is None:
                return None
            try:
                return datetime.date.fromisoformat(value)
            except ValueError as err:
                raise ValidationError(
                    f"{name}: a date as YYYY-MM-DD", code="invalid_search", field=name
                ) from err

        start, end = day("from"), day("to")
        if start and end and end < start:
            raise ValidationError("to: before from", code="invalid_search", field="to")
        outcome = text("outcome", 16)
        if outcome is not None and outcome not in OUTCOMES:
            raise ValidationError(
                f"outcome: one of {', '.join(OUTCOMES)}", code="invalid_search", field="outcome"
            )
        flag = text("flag", 32)
        if flag is not None and not re.fullmatch(r"[a-z_]+", flag):
            raise ValidationError("flag: a flag's name", code="invalid_search", field="flag")
        return cls(
            since=_midnight(start) if start else None,
            until=_midnight(end + datetime.timedelta(days=1)) if end else None,
            outcome=outcome,
            operator=text("operator", 64),
            name=text("name", 128),
            document=text("document", 32),
            flag=flag,
            page_size=_page_size(text("page_size", 3)),
            after=text("after", 128),
        )


def _page_size(value: str | None) -> int:
    if value is None:
        return PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise ValidationError(
            f"page_size: a number from 1 to {MAX_PAGE_SIZE}",
            code="invalid_search",
            field="page_size",
        )
    return int(value)


def _midnight(day: datetime.date) -> float:
    return datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp()


def flags_of(row: dict[str, Any]) -> list[str]:
    """What deserves a compliance officer's attention in a session, by name."""
    out: set[str] = set()
    results = row["results"]
    if results.get("personal_data", {}).get("edited"):
        out.add("data_edited")
    match = (results.get("selfie") or {}).get("match")
    if match is not None and not match.get("match"):
        out.add("face_mismatch")
    out.update(str(w) for w in results.get("document", {}).get("warnings", ()))
    if row["gaps"]:
        out.add("reconnected")
    statuses = set(row["recordings"])
    if "interrupted" in statuses:
        out.add("recording_interrupted")
    if "failed" in statuses:
        out.add("recording_failed")
    if row["deciders"] and not statuses:
        out.add("no_recording")
    if len(row["deciders"]) > 1:
        out.add("four_eyes")
    if row["hold"]:
        out.add("legal_hold")
    if row["purged_at"] is not None:
        out.add("purged")
    analysis = row["analysis"] or {}
    out.update(str(f) for f in (analysis.get("signals") or {}).get("flags", ()))
    return sorted(out)


def _personal(row: dict[str, Any]) -> dict[str, str]:
    fields = row["results"].get("personal_data", {}).get("fields") or {}
    mrz = row["results"].get("document", {}).get("mrz") or {}
    return {
        "surname": str(fields.get("surname") or mrz.get("surname") or ""),
        "given_names": str(fields.get("given_names") or mrz.get("given_names") or ""),
        "document_number": str(fields.get("document_number") or mrz.get("document_number") or ""),
    }


def _masked(number: str) -> str:
    return "" if not number else "•" * max(0, len(number) - 3) + number[-3:]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    person = _personal(row)
    document = row["results"].get("document", {})
    last = row["deciders"][-1] if row["deciders"] else None
    return {
        "session_id": row["session_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "state": row["state"],
        "operator": last["operator"] if last else None,
        "deciders": row["deciders"],
        "customer": " ".join(p for p in (person["given_names"], person["surname"]) if p),
        "document": {
            "type": document.get("type"),
            "country": document.get("country"),
            "number": _masked(person["document_number"]),
        },
        "recordings": row["recordings"],
        "flags": flags_of(row),
    }


def _cursor(row: dict[str, Any]) -> str:
    raw = f"{row['created_at']!r} {row['session_id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[float, str]:
    """The (created_at, session id) a cursor names; a ``ValidationError`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, session_id = raw.split(" ")
        position = float(at), session_id
    except ValueError as err:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValidationError(
            "after: a cursor from next", code="invalid_search", field="after"
        ) from err
    if not _SESSION.fullmatch(session_id) or not math.isfinite(position[0]):
        raise ValidationError("after: a cursor from next", code="invalid_search", field="after")
    return position


async def search(repo: Repository, query: Query) -> dict[str, Any]:
    """One page of the sessions matching ``query``, newest first: at most
    ``query.page_size``, after the session ``query.after`` names; with the exact
    ``total`` of matching sessions and the cursor of the ``next`` page (None on the
    last). Every filter runs in the database (no window)."""
    operator_id = None
    if query.operator is not None:
        operator = await repo.find_operator(username=query.operator)
        if operator is None:
            raise ValidationError(
                f"no operator is called {query.operator!r}",
                code="unknown_operator",
                field="operator",
            )
        operator_id = operator.id
    personal = repo.personal
    where = SessionFilter(
        since=query.since,
        until=query.until,
        states=OUTCOMES[query.outcome] if query.outcome else (),
        operator_id=operator_id,
        # blind indexes of the query's words and number: the search never reads a name
        name_words=tuple(personal.word_index(w) if w else "" for w in query_words(query.name))
        if query.name
        else (),
        document=personal.document_index(query.document) if query.document else None,
        flag=query.flag,
    )
    after = _position(query.after) if query.after else None
    rows = await repo.search_sessions(where, after=after, limit=query.page_size + 1)
    total = await repo.count_sessions(where)
    page, more = rows[: query.page_size], len(rows) > query.page_size
    return {
        "sessions": [summary(row) for row in page],
        "total": total,
        "page_size": query.page_size,
        "next": _cursor(page[-1]) if more else None,
        "more": more,
        "flags": list(FLAGS),
        "outcomes": list(OUTCOMES),
    }
