"""Issue 14, item 7: least privilege, audited; customer tokens that end.

An operator reads a session only while it is offered or assigned to them (and for a
short grace after the decision); supervisors and compliance by role; every read and
every 401/403 is an audit entry with the request id; the access log names routes, not
paths; the customer's link stops after ``onboarding.customer_access_hours``."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from videoid.access import RefusalBudget, operator_may_read
from videoid.bots.operator_bot import login
from videoid.bots.signaling_client import ProtocolError, SignalingClient

from .conftest import PASSWORD, Server, StartServer
from .test_call_end_to_end import run_call

# -- the pure rules ---------------------------------------------------------------------------


def test_who_may_read_a_session() -> None:
    def may(role: str, me: int, **kw: Any) -> bool:
        args: dict[str, Any] = {
            "state": "in_call",
            "holder": 7,
            "offered_to": 7,
            "decided": None,
            "now": 1000.0,
            "grace_seconds": 60.0,
        }
        return operator_may_read(role, me, **{**args, **kw})

    assert may("operator", 7) and not may("operator", 8)
    assert may("supervisor", 8) and may("compliance", 8) and not may("nobody", 7)
    # offered to me (not yet accepted), and no longer once it went back to the queue
    assert may("operator", 8, state="assigned", holder=None, offered_to=8)
    assert not may("operator", 8, state="in_call", holder=7, offered_to=8)
    # after the decision: the holder within the grace, then nobody
    assert may("operator", 7, state="approved", decided=950.0)
    assert not may("operator", 7, state="approved", decided=900.0)
    assert not may("operator", 8, state="approved", decided=990.0, offered_to=8)


def test_refusals_are_audited_within_a_budget_and_counted_beyond_it() -> None:
    budget = RefusalBudget(per_client=3, total=5, window_seconds=60.0, max_clients=4)
    written = [budget.admit("a", 0.0).write for _ in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert [budget.admit("b", 1.0).write for _ in range(3)] == [True, True, False]  # total
    # the next window: the first entry tells how many were not written
    assert budget.admit("a", 60.0).suppressed == 7
    assert budget.admit("a", 61.0).suppressed == 0
    # many clients at once share one bucket rather than grow the table
    budget = RefusalBudget(per_client=1, total=100, max_clients=2)
    assert [budget.admit(str(i), 0.0).write for i in range(5)] == [True, True, True, False, False]


# -- on a running server ----------------------------------------------------------------------


async def get(token: str, url: str) -> tuple[int, Any, str]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(url) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, r.headers.get("X-Request-Id", "")


async def refusals(server: Server) -> list[tuple[str, str, dict[str, Any]]]:
    repo = server.services.repo
    details = await repo.audit_details()
    return [
        (e.actor, e.subject, details[e.seq][1])
        for e in await repo.audit_entries()
        if e.action == "request_refused"
    ]


async def test_an_operator_reads_only_what_is_offered_or_assigned_to_them(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="videoid.access")
    server = await start_server()
    invitation = await server.invite()
    olga_id = await server.operator("olga")
    mallory_id = await server.operator("mallory")
    await server.operator("sue", "supervisor")
    await server.operator("carl", "compliance")
    olga = await login(server.url, "olga", PASSWORD)
    mallory = await login(server.url, "mallory", PASSWORD)
    record_url = f"{server.url}/api/sessions/{invitation.session_id}"

    customer = SignalingClient(server.url, "/customer")
    await customer.connect({"token": invitation.token})
    await customer.request("join_queue")
    operator = SignalingClient(server.url, "/operator")
    await operator.connect({"token": olga})
    try:
        await operator.request("set_presence", {"status": "available"})
        offered = await operator.next("assignment_offered", 5)
        # offered to olga: she may look before accepting; mallory may not
        assert (await get(olga, record_url))[0] == 200
        await operator.request("accept", {"session_id": offered["session_id"]})
        status, body, _ = await get(olga, record_url)
        assert status == 200 and body["operator_id"] == olga_id
        for path in ("", "/images/front", "/onboarding", "/call"):
            status, body, rid = await get(mallory, record_url + path)
            assert (status, body["error"]["code"]) == (403, "forbidden"), path
            assert len(rid) == 16
        for staff in ("sue", "carl"):
            assert (await get(await login(server.url, staff, PASSWORD), record_url))[0] == 200
    finally:
        await operator.close()
        await customer.close()

    # every refusal on record: who, what, the request id (the last one's is rid)
    refused = await refusals(server)
    mine = [r for r in refused if r[0] == f"operator:{mallory_id}"]
    assert len(mine) == 4 and all(s == invitation.session_id for _, s, _ in mine)
    assert mine[-1][2] == {
        "request_id": rid,
        "method": "GET",
        "route": "/api/sessions/{session_id}/call",
        "status": 403,
        "code": "forbidden",
    }
    # and every read, with its request id; never a name or a token in the chain
    repo = server.services.repo
    details = await repo.audit_details()
    reads = [
        (e.actor, details[e.seq][1])
        for e in await repo.audit_entries()
        if e.action == "evidence_viewed" and e.subject == invitation.session_id
    ]
    assert [a for a, _ in reads].count(f"operator:{olga_id}") == 2
    assert all(len(d["request_id"]) == 16 for _, d in reads) and len(reads) == 4
    # a 401 is audited too, as anonymous
    async with aiohttp.ClientSession() as http, http.get(record_url) as r:
        assert r.status == 401
        anonymous = r.headers["X-Request-Id"]
    assert (await refusals(server))[-1][:1] == ("anonymous",)
    assert (await refusals(server))[-1][2]["request_id"] == anonymous

    # the access log: one line per request, its id, the route pattern, no token/id
    lines = [r.getMessage() for r in caplog.records if r.name == "videoid.access"]
    line = next(x for x in lines if x.startswith(rid))
    assert " GET /api/sessions/{session_id}/call 403 " in line
    text = "\n".join(lines)
    for secret in (olga, mallory, invitation.token, invitation.session_id, "olga", "mallory"):
        assert secret not in text


async def test_a_flood_of_refusals_adds_a_bounded_number_of_entries(
    start_server: StartServer,
) -> None:
    server = await start_server(audit={"refusals_per_minute": 5})
    invitation = await server.invite()
    url = f"{server.url}/api/sessions/{invitation.session_id}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer nope"}) as http:
        for _ in range(40):
            async with http.get(url) as r:
                assert r.status == 401
    assert len(await refusals(server)) == 5


async def test_access_ends_after_the_decision(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server(
        live={"workers": 0},
        operators={"read_grace_seconds": 5.0},
        onboarding={"customer_access_hours": 8 / 3600, "certificate_request_hours": 3 / 3600},
    )
    # what takes time (an account, a login: Argon2) is done before the call, so that the
    # checks right after the decision fall within the windows on a loaded machine
    await server.operator("mallory")
    mallory = await login(server.url, "mallory", PASSWORD)
    invitation, result, _ = await run_call(server, customer_video, operator_video)
    assert result.outcome == "approved"
    repo = server.services.repo
    decided = next(at for _, to, at, _ in await repo.transitions(invitation.session_id)
                   if to == "approved")  # fmt: skip
    olga = await login(server.url, "olga", PASSWORD)
    record_url = f"{server.url}/api/sessions/{invitation.session_id}"
    me = invitation.token

    async def until(seconds_after_decision: float) -> None:
        await asyncio.sleep(max(0.0, decided + seconds_after_decision - time.time()))

    assert time.time() < decided + 3.0, "the call took too long to test the grace"
    # right after the decision: the operator who decided, not another one
    status, body, _ = await get(olga, record_url)
    assert status == 200 and body["decisions"][0]["outcome"] == "approved"
    assert (await get(olga, record_url + "/call"))[0] == 200
    assert (await get(mallory, record_url))[0] == 403
    assert (await get(me, f"{server.url}/api/onboarding"))[0] == 200

    # the certificate must be asked for within its window
    await until(3.1)
    assert time.time() < decided + 5.0, "too late to test the grace"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {me}"}) as http,
        http.post(f"{server.url}/api/signing/certificate") as r,
    ):
        assert (r.status, (await r.json())["error"]["code"]) == (
            409,
            "certificate_window_closed",
        )

    # the operator's grace ends
    await until(5.1)
    status, body, _ = await get(olga, record_url)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (await get(olga, record_url + "/call"))[0] == 403

    # the customer's link ends: onboarding, signing and the socket
    await until(8.1)
    for path in ("/api/onboarding", "/api/signing", "/api/signing/signed.pdf"):
        status, body, _ = await get(me, server.url + path)
        assert (status, body["error"]["code"]) == (401, "access_expired"), path
    customer = SignalingClient(server.url, "/customer")
    with pytest.raises(ProtocolError) as err:
        await customer.connect({"token": me})
    assert err.value.code == "access_expired"
