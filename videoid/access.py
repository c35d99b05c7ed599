"""Least privilege, audited (issue 14, item 7).

* Who may read a session's record and evidence: :func:`operator_may_read` (pure, with an
  explicit ``now``). An operator reads a session only while it is offered to or assigned
  to them, and for ``operators.read_grace_seconds`` after its decision; supervisors and
  compliance officers read by role.
* How long a customer's token opens their session: :func:`customer_access_until`.
* The access log and the audit of refused requests: :func:`access_middleware` gives
  every request an id (``X-Request-Id``), writes one log line per request (request id,
  method, route pattern, status, duration; never the raw path, a query, a token or a
  name) and an audit entry for every 401/403, rate-limited per client by
  :class:`RefusalBudget` so that a flood cannot grow the audit log without bound.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from .session import State

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("videoid.access")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = web.RequestKey("request_id", str)
_ACTOR = web.RequestKey("actor", str)
_SESSION_ID = re.compile(r"[0-9a-f-]{36}")

POST_CALL = frozenset(
    s.value
    for s in (
        State.APPROVED,
        State.REJECTED,
        State.SUSPENDED,
        State.CERTIFICATE_REQUESTED,
        State.CONTRACT_SIGNED,
        State.COMPLETED,
        State.ABANDONED,
        State.EXPIRED,
    )
)
"""States a session reaches at its decision or after it (or when it ends without one)."""

OFFERED = frozenset((State.WAITING.value, State.ASSIGNED.value))
STAFF_BY_ROLE = frozenset(("supervisor", "compliance"))

Transitions = Iterable[tuple[str, str, float, str]]
"""``(previous, state, at, actor)``, in order, as the repository gives them."""


def decided_at(transitions: Transitions) -> float | None:
    """When the session first reached a state after the call (its decision), or None."""
    return next((at for _, state, at, _ in transitions if state in POST_CALL), None)


def last_step_at(transitions: Transitions) -> float | None:
    """When the session last moved to a state after the call (decision, certificate,
    signature, completion), or None while it has not been decided."""
    out = None
    for _, state, at, _ in transitions:
        if state in POST_CALL:
            out = at
    return out


def operator_may_read(
    role: str,
    operator_id: int,
    *,
    state: str,
    holder: int | None,
    offered_to: int | None,
    decided: float | None,
    now: float,
    grace_seconds: float,
) -> bool:
    """Whether a member of staff may read a session's record and evidence.

    ``holder`` is the operator the session is assigned to (or was, at its decision);
    ``offered_to`` the operator of its latest assignment draw; ``decided`` the time of
    its decision (:func:`decided_at`)."""
    if role in STAFF_BY_ROLE:
        return True
    if role != "operator":
        return False
    if decided is not None:
        return holder == operator_id and now <= decided + grace_seconds
    if holder == operator_id:
        return True
    return offered_to == operator_id and state in OFFERED


def customer_access_until(transitions: Transitions, access_hours: float) -> float | None:
    """Until when a customer's invitation and device tokens open the session: the last
    step after the call plus ``access_hours``; None while the session is not decided."""
    last = last_step_at(transitions)
    return None if last is None else last + access_hours * 3600


# -- refused requests in the audit log --------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """What to do with one refused request."""

    write: bool
    """Whether it gets an audit entry of its own."""
    suppressed: int
    """Refusals of this client not written since its last entry (told in this one)."""


class RefusalBudget:
    """At most ``per_client`` audit entries per client and ``total`` in all per window of
    ``window_seconds``; the refusals beyond are counted and their number goes into the
    client's next entry (``suppressed``). The audit log then grows by at most
    ``total`` entries per window whatever a flood sends, and no refusal goes unrecorded
    by number. At most ``max_clients`` clients are tracked; when more are seen at once
    they share one bucket."""

    OVERFLOW = "*"

    def __init__(
        self,
        per_client: int,
        total: int,
        window_seconds: float = 60.0,
        max_clients: int = 4096,
    ) -> None:
        self.per_client, self.total = per_client, total
        self.window_seconds, self.max_clients = window_seconds, max_clients
        self._window_start = float("-inf")
        self._written: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}
        self._total_written = 0

    def admit(self, client: str, now: float) -> Admission:
        if now - self._window_start >= self.window_seconds:
            self._window_start = now
            self._written.clear()
            self._total_written = 0
            # a client's suppressed count is kept until its next entry tells it
        if client not in self._written and client not in self._suppressed:
            if len(self._written) + len(self._suppressed) >= self.max_clients:
                client = self.OVERFLOW
        written = self._written.get(client, 0)
        if written >= self.per_client or self._total_written >= self.total:
            self._suppressed[client] = self._suppressed.get(client, 0) + 1
            return Admission(False, 0)
        self._written[client] = written + 1
        self._total_written += 1
        return Admission(True, self._suppressed.pop(client, 0))


# -- the request's id and actor -----------------------------------------------------------------


def request_id(request: web.Request) -> str:
    """This request's id (also in the response's ``X-Request-Id``)."""
    value = request.get(_REQUEST_ID)
    if value is None:
        value = request[_REQUEST_ID] = secrets.token_hex(8)
    return value


def set_actor(request: web.Request, actor: str) -> None:
    """Who made this request, once known (``operator:<id>``, ``customer:<session>``):
    named in the audit entry if the request is then refused."""
    request[_ACTOR] = actor


def actor(request: web.Request) -> str:
    value = request.get(_ACTOR)
    return value if isinstance(value, str) else "anonymous"


def route_pattern(request: web.Request) -> str:
    """The route's pattern (``/api/sessions/{session_id}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuditLog(Protocol):
    async def append_audit(
        self, at: float, action: str, actor: str, subject: str, details: dict[str, Any]
    ) -> object: ...


def access_middleware(
    budget: RefusalBudget,
    audit_of: Callable[[web.Request], AuditLog],
    clock: Callable[[], float],
) -> Any:
    """The outermost middleware: request id, access log line, audit of 401/403.

    ``audit_of(request)`` is the audit log refusals are written to; ``clock`` the
    server's (seconds since the epoch)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id(request)
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = rid
            if status in (401, 403):
                await _refusal(request, status, _error_code(response))
            return response
        except web.HTTPException as err:
            status = err.status
            err.headers[REQUEST_ID_HEADER] = rid
            if status in (401, 403):
                await _refusal(request, status, "http_error")
            raise
        finally:
            access_logger.info(
                "%s %s %s %d %.1fms",
                rid,
                request.method,
                route_pattern(request),
                status,
                (time.monotonic() - started) * 1000,
            )

    async def _refusal(request: web.Request, status: int, code: str) -> None:
        now = clock()
        admission = budget.admit(request.remote or "-", now)
        if not admission.write:
            return
        session_id = request.match_info.get("session_id", "")
        details: dict[str, Any] = {
            "request_id": request_id(request),
            "method": request.method,
            "route": route_pattern(request),
            "status": status,
            "code": code,
        }
        if admission.suppressed:
            details["suppressed"] = admission.suppressed
        try:
            await audit_of(request).append_audit(
                now,
                "request_refused",
                actor(request),
                session_id if _SESSION_ID.fullmatch(session_id) else "-",
                details,
            )
        except Exception:  # the refusal is answered either way; the log says why
            logger.exception("request %s: the refusal could not be audited", request_id(request))

    return middleware


def _error_code(response: web.StreamResponse) -> str:
    body = getattr(response, "body", None)
    if isinstance(body, bytes) and len(body) < 4096:
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return "-"
        if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 40:
            return code
    return "-"


async def audit_read(
    audit: AuditLog, request: web.Request, now: float, session_id: str, what: str
) -> None:
    """An audit entry for a read of a session's personal data: who (the request's
    actor), what (``what``, a route's name, never a value), when, and the request id."""
    await audit.append_audit(
        now,
        "evidence_viewed",
        actor(request),
        session_id,
        {"what": what, "request_id": request_id(request)},
    )
