"""Staff reading a session's record and evidence: who may (see
:func:`videoid.access.operator_may_read`), and an audit entry for every read."""

from __future__ import annotations

import logging

from aiohttp import web

from .access import STAFF_BY_ROLE, audit_read, decided_at, operator_may_read
from .db import SessionRecord
from .errors import Forbidden, SessionNotFound
from .services import SERVICES
from .web.requests import require_staff

logger = logging.getLogger(__name__)


async def readable_session(request: web.Request, what: str) -> SessionRecord:
    """The session of the route's ``session_id`` if the logged-in member of staff may
    read it now, after an audit entry of the read (``what``: which part). Raises
    AuthError (401), Forbidden (403) or SessionNotFound (404)."""
    services = request.app[SERVICES]
    operator = await require_staff(request)
    session_id = request.match_info["session_id"]
    repo = services.repo
    record = await repo.find_session(id=session_id) if len(session_id) == 36 else None
    if record is None:
        raise SessionNotFound()
    now = services.clock.now()
    if operator.role not in STAFF_BY_ROLE:
        draws = await repo.assignments(record.id)
        if not operator_may_read(
            operator.role,
            operator.id,
            state=record.state,
            holder=record.operator_id,
            offered_to=draws[-1].operator_id if draws else None,
            decided=decided_at(await repo.transitions(record.id)),
            now=now,
            grace_seconds=services.config.operators.read_grace_seconds,
        ):
            logger.info("session %s: read refused to operator %d", record.id, operator.id)
            raise Forbidden("this session is not offered or assigned to you")
    await audit_read(repo, request, now, record.id, what)
    return record
