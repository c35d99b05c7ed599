"""HTTP endpoints: pages, operator login, invitations, session records, health.

Errors are JSON ``{"error": {"code", "message"}}`` with a stable code; see
docs/protocol.md."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from .analysis_pool import AnalysisPool
from .db import OperatorRecord
from .errors import ServerBusy, for_client, is_full
from .loop_monitor import LoopMonitor
from .services import Services
from .staff_reads import readable_session
from .web.requests import login_token, read_fields, require_staff, services_of
from .web_security import WEB_SECURITY

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
        "connect-src 'self'; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        response = web.json_response(
            {"error": {"code": "payload_too_large", "message": "the request is too large"}},
            status=413,
        )
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status, "http_error")
        response = web.json_response(
            {"error": {"code": code, "message": err.reason}}, status=err.status
        )
    except Exception as err:  # every error is JSON with a code, never its own text
        public = for_client(err, f"{request.method} {request.path}")
        response = web.json_response({"error": public.to_dict()}, status=public.status)
        if isinstance(public, ServerBusy):
            response.headers["Retry-After"] = str(public.retry_after_seconds)
    if not request.path.startswith("/socket.io"):
        response.headers.update(SECURITY_HEADERS)
    if request.path.startswith(("/api/", "/join")) and "Cache-Control" not in response.headers:
        # what the API answers is about a person, or a decision on one: never kept by
        # a browser's or a proxy's cache
        response.headers["Cache-Control"] = "no-store"
    return response


LOOP_MONITOR = web.AppKey("loop_monitor", LoopMonitor)


class HttpApi:
    """Handlers reach the running parts through ``request.app[SERVICES]``."""

    def __init__(self) -> None:
        self._health: dict[str, Any] = {}
        """The parts' latest check: ``[checked_at, checks]``."""

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self._page("index.html")),
            web.get("/join", self._page("customer.html")),
            web.get("/operator", self._page("operator.html")),
            web.get("/compliance", self._page("compliance.html")),
            web.static("/static", STATIC),
            web.get("/api/health", self.health),
            web.post("/api/operator/login", self.login),
            web.post("/api/operator/logout", self.logout),
            web.get("/api/operator/me", self.me),
            web.post("/api/invitations", self.create_invitation),
            web.get("/api/sessions/{session_id}", self.session),
        ]

    def _page(self, name: str) -> Handler:
        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

        return page

    async def health(self, request: web.Request) -> web.Response:
        """Each part checked (the database answers, room on the data directory's disk,
        the token answers, the analysis pools have workers): 200 ``ok``, or 503
        ``failing`` naming the part."""
        services = services_of(request)
        snapshot = services.center.snapshot()
        try:
            seconds = min(600.0, max(1.0, float(request.query.get("lag_seconds", "20"))))
        except ValueError:
            seconds = 20.0
        checks = await _checks(self._health, services)
        failing = sorted(k for k, v in checks.items() if v not in ("ok", "unused"))
        return web.json_response(
            {
                "status": "failing" if failing else "ok",
                "failing": failing,
                "checks": checks,
                "waiting": len(snapshot["waiting"]),
                "operators": snapshot["operators"],
                "loop_lag_ms": request.app[LOOP_MONITOR].stats(seconds),
            },
            status=503 if failing else 200,
        )

    async def login(self, request: web.Request) -> web.Response:
        # the password step: the login itself comes with the second factor
        # (/api/operator/login/second-factor, operator_console/accounts_http.py)
        from .operator_console.accounts_http import password_passed_json

        body = await read_fields(request, {"username": 64, "password": 256})
        passed = await services_of(request).accounts.login(
            body["username"],
            body["password"],
            services_of(request).clock.now(),
            address=request.remote,
        )
        return web.json_response(password_passed_json(passed))

    async def logout(self, request: web.Request) -> web.Response:
        token = login_token(request)
        if token:
            await services_of(request).accounts.logout(token)
        response = web.json_response({"ok": True})
        request.app[WEB_SECURITY].clear_login(response)
        return response

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"operator": _operator_json(await require_staff(request))})

    async def create_invitation(self, request: web.Request) -> web.Response:
        await require_staff(request, "supervisor", refused="only supervisors create invitations")
        body = await read_fields(request, {"email": 254, "phone": 32})
        services = services_of(request)
        invitation = await services.invitations.create(
            body["email"], body["phone"], services.clock.now(), services.base_url
        )
        return web.json_response(
            {
                "session_id": invitation.session_id,
                "url": invitation.url,
                "expires_at": invitation.expires_at,
            },
            status=201,
        )

    async def session(self, request: web.Request) -> web.Response:
        # an operator only while the session is offered or assigned to them (R14.7)
        record = await readable_session(request, "record")
        repo = services_of(request).repo
        return web.json_response(
            {
                "session_id": record.id,
                "state": record.state,
                "operator_id": record.operator_id,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "transitions": [
                    {"from": a, "to": b, "at": at, "actor": actor}
                    for a, b, at, actor in await repo.transitions(record.id)
                ],
                "assignments": [
                    {
                        "operator_id": d.operator_id,
                        "candidates": list(d.candidates),
                        "index": d.index,
                        "at": d.at,
                    }
                    for d in await repo.assignments(record.id)
                ],
                "decisions": [
                    {
                        "operator_id": d.operator_id,
                        "outcome": d.outcome,
                        "reason_code": d.reason_code,
                        "reason_text": d.reason_text,
                        "at": d.at,
                    }
                    for d in await repo.decisions(record.id)
                ],
            }
        )


def _operator_json(operator: OperatorRecord) -> dict[str, Any]:
    return {"id": operator.id, "username": operator.username, "role": operator.role}


DATABASE_PROBE_SECONDS = 2.0
"""How long the health check's write may wait for a lock (bounded by the database)."""


async def _database_health(services: Services) -> str:
    """``ok`` when the database takes a write (one row, committed) without waiting more
    than ``DATABASE_PROBE_SECONDS`` for a lock; else ``slow``, ``full``, ``read_only``
    (a fail-over to a standby, a read-only file) or ``unreachable``."""
    try:
        # the database bounds the wait; this only covers a connection that hangs
        async with asyncio.timeout(DATABASE_PROBE_SECONDS + 3):
            await services.repo.write_probe(services.clock.now(), DATABASE_PROBE_SECONDS)
    except TimeoutError:
        return "slow"
    except Exception as err:  # any failure to write is the answer
        logger.warning("health: the database takes no write (%s)", type(err).__name__)
        if is_full(err):
            return "full"
        if _read_only(err):
            return "read_only"
        if _lock_wait(err):
            return "slow"
        return "unreachable"
    return "ok"


def _causes(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        cause = todo.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        orig = getattr(cause, "orig", None)
        todo += [
            cause.__cause__,
            cause.__context__,
            orig if isinstance(orig, BaseException) else None,
        ]


_SQLITE_READONLY, _SQLITE_BUSY, _SQLITE_LOCKED = 8, 5, 6


def _read_only(err: BaseException) -> bool:
    """PostgreSQL's read_only_sql_transaction (25006), SQLite's SQLITE_READONLY."""
    return any(
        getattr(c, "sqlstate", None) == "25006"
        or (getattr(c, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_READONLY
        for c in _causes(err)
    )


def _lock_wait(err: BaseException) -> bool:
    """PostgreSQL's lock_not_available (55P03) or query_canceled (57014, the probe's
    statement_timeout), SQLite's SQLITE_BUSY / SQLITE_LOCKED."""
    return any(
        getattr(c, "sqlstate", None) in ("55P03", "57014")
        or (getattr(c, "sqlite_errorcode", 0) or 0) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
        for c in _causes(err)
    )


def _storage_health(services: Services) -> str:
    """``ok`` when the data directory takes a small write and has room; else ``full``,
    ``low`` (under ``server.min_free_mb``), ``read_only`` or ``unreachable``."""
    data = services.config.data_path
    try:
        free = shutil.disk_usage(data).free
        fd = os.open(data / ".health", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok\n")
            os.fsync(fd)  # a disk failing with I/O errors fails here
        finally:
            os.close(fd)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "read_only"
        return "unreachable"
    if free < 64 * 1024:
        return "full"
    return "low" if free < services.config.server.min_free_mb * 1_000_000 else "ok"


HEALTH_CACHE_SECONDS = 2.0
"""The parts are checked at most this often, and one check at a time: anyone may ask,
so a flood of health requests costs one check every two seconds, not one each."""


async def _checks(cache: dict[str, Any], services: Services) -> dict[str, str]:
    """The parts' states: from ``cache`` when fresh; else the check under way, or a new
    one, awaited by every request that asks meanwhile."""
    loop = asyncio.get_running_loop()
    if "checks" in cache and loop.time() - cache["at"] < HEALTH_CACHE_SECONDS:
        return dict(cache["checks"])
    running: asyncio.Future[dict[str, str]] | None = cache.get("running")
    if running is None or running.done():
        running = cache["running"] = asyncio.ensure_future(_check_all(services))

        def keep(task: asyncio.Future[dict[str, str]]) -> None:
            if not task.cancelled() and task.exception() is None:
                cache["at"], cache["checks"] = loop.time(), task.result()

        running.add_done_callback(keep)
    return dict(await asyncio.shield(running))


async def _check_all(services: Services) -> dict[str, str]:
    center = services.center
    pools = {
        "analysis": services.pool,
        "live_analysis": center.live_pool,
        "face_match": center.match_pool,
    }

    async def pool_health(pool: AnalysisPool | None) -> str:
        return "unused" if pool is None else await pool.health()

    database, storage, token, *pooled = await asyncio.gather(
        _database_health(services),
        asyncio.to_thread(_storage_health, services),
        services.trust.token_health(),
        *(pool_health(pool) for pool in pools.values()),
    )
    return {
        "database": database,
        "storage": storage,
        "token": token,
        **dict(zip(pools, pooled, strict=True)),
    }
