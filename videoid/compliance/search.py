"""Finding sessions for a compliance officer: by date, outcome, operator, the
customer's name or document number, and flags.

The database narrows by date, state and operator; names, document numbers and flags
are matched here, on what onboarding and the call stored (names as the MRZ writes
them, so "Müller" finds "MUELLER" and "Mueller")."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from ..db import Repository
from ..documents.mrz import mrz_name
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

MAX_RESULTS = 200
_DOCUMENT = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True)
class Query:
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    operator: str | None = None
    name: str | None = None
    document: str | None = None
    flag: str | None = None

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
        )


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


def matches(query: Query, row: dict[str, Any], flags: list[str]) -> bool:
    person = _personal(row)
    if query.name:
        have = mrz_name(f"{person['given_names']} {person['surname']}")
        if not all(mrz_name(word) in have for word in query.name.split()):
            return False
    if query.document:
        wanted = _DOCUMENT.sub("", query.document.upper())
        if not wanted or _DOCUMENT.sub("", person["document_number"].upper()) != wanted:
            return False
    return not (query.flag and query.flag not in flags)


async def search(repo: Repository, query: Query) -> dict[str, Any]:
    """The sessions matching ``query``, newest first, at most :data:`MAX_RESULTS`."""
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
    rows = await repo.search_sessions(
        since=query.since,
        until=query.until,
        states=OUTCOMES[query.outcome] if query.outcome else (),
        operator_id=operator_id,
    )
    found = []
    for row in rows:
        out = summary(row)
        if matches(query, row, out["flags"]):
            found.append(out)
    return {
        "sessions": found[:MAX_RESULTS],
        "more": len(found) > MAX_RESULTS,
        "flags": list(FLAGS),
        "outcomes": list(OUTCOMES),
    }
