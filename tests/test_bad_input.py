"""Bad input of every kind the live call meets (R21): forged and expired tokens, a second
tab, unknown and wrong-role events, malformed payloads, events out of order, malformed and
oversized SDP, floods, an operator accepting a customer already taken. Each gets a stable
error code; the server keeps serving; nothing persisted is lost."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from videoid.bots.media_client import ClientPeer
from videoid.bots.operator_bot import login
from videoid.bots.signaling_client import ProtocolError, SignalingClient

from .conftest import PASSWORD, Server, StartServer
from .test_queue_flow import customer, operator


async def refused_code(server: Server, namespace: str, auth: dict) -> str:
    client = SignalingClient(server.url, namespace)
    with pytest.raises(ProtocolError) as err:
        await client.connect(auth)
    await client.close()
    return err.value.code


async def error_code(client: SignalingClient, event: str, payload=None) -> str:
    with pytest.raises(ProtocolError) as err:
        await client.request(event, payload)
    return err.value.code


async def in_call(server: Server) -> tuple[SignalingClient, SignalingClient, str]:
    cust, session_id = await customer(server)
    op, _ = await operator(server, "olga")
    await op.request("set_presence", {"status": "available"})
    await cust.request("join_queue")
    await op.next("assignment_offered", 5)
    await op.request("accept", {"session_id": session_id})
    await cust.next("call_started", 5)
    return cust, op, session_id


async def test_forged_missing_and_expired_tokens(start_server: StartServer) -> None:
    server = await start_server(invitations={"ttl_hours": 0.5 / 3600})
    assert await refused_code(server, "/customer", {"token": "x" * 43}) == "invitation_invalid"
    assert await refused_code(server, "/customer", {}) == "invitation_invalid"
    assert await refused_code(server, "/customer", {"token": ["x"]}) == "invitation_invalid"
    invitation = await server.invite()
    await asyncio.sleep(0.6)
    assert (
        await refused_code(server, "/customer", {"token": invitation.token}) == "invitation_expired"
    )
    assert await refused_code(server, "/operator", {"token": "forged"}) == "unauthorized"
    assert await refused_code(server, "/operator", {}) == "unauthorized"


async def test_second_tab_with_the_same_token(server: Server) -> None:
    invitation = await server.invite()
    first = SignalingClient(server.url, "/customer")
    await first.connect({"token": invitation.token})
    await first.next("session", 5)
    assert await refused_code(server, "/customer", {"token": invitation.token}) == "session_in_use"
    assert (await first.request("join_queue"))["position"] == 1  # the first tab goes on
    await first.close()
    again = SignalingClient(server.url, "/customer")  # once the first has gone, it may
    await again.connect({"token": invitation.token})
    await again.close()


async def test_unknown_wrong_role_and_malformed_events(server: Server) -> None:
    cust, session_id = await customer(server)
    assert await error_code(cust, "no_such_event") == "unknown_event"
    assert (
        await error_code(
            cust, "decide", {"session_id": session_id, "outcome": "approved", "reason_code": "x"}
        )
        == "unknown_event"
    )
    assert await error_code(cust, "accept", {"session_id": session_id}) == "unknown_event"
    assert await error_code(cust, "join_queue", {"surprise": 1}) == "invalid_payload"
    assert await error_code(cust, "join_queue", "a string") == "invalid_payload"
    assert await error_code(cust, "webrtc_offer", {"sdp": 42}) == "invalid_payload"
    op, _ = await operator(server, "olga")
    assert await error_code(op, "set_presence", {"status": "asleep"}) == "invalid_payload"
    assert await error_code(op, "accept", {"session_id": "x"}) == "invalid_payload"
    assert await error_code(op, "join_queue") == "unknown_event"
    # the error also arrives as an event, for clients that do not use acknowledgements
    event = await cust.next("error", 5)
    assert event["code"] == "unknown_event" and event["event"] == "no_such_event"
    # and the session is untouched
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "created"
    await asyncio.gather(cust.close(), op.close())


async def test_events_out_of_order(server: Server) -> None:
    cust, session_id = await customer(server)
    op, _ = await operator(server, "olga")
    assert await error_code(cust, "leave_queue") == "illegal_transition"
    assert await error_code(cust, "webrtc_offer", {"type": "offer", "sdp": "v=0"}) == "no_call"
    assert await error_code(op, "accept", {"session_id": session_id}) == "not_assigned"
    assert (
        await error_code(
            op, "decide", {"session_id": session_id, "outcome": "approved", "reason_code": "ok"}
        )
        == "not_assigned"
    )
    assert await error_code(op, "webrtc_offer", {"type": "offer", "sdp": "v=0"}) == "no_call"
    await cust.request("join_queue")
    assert await error_code(cust, "join_queue") == "illegal_transition"  # twice
    transitions = await server.services.repo.transitions(session_id)
    assert [t[1] for t in transitions] == ["created", "waiting"]
    await asyncio.gather(cust.close(), op.close())


async def test_accepting_a_customer_already_taken(server: Server) -> None:
    cust, session_id = await customer(server)
    ann, _ = await operator(server, "ann")
    ben, _ = await operator(server, "ben")
    await ann.request("set_presence", {"status": "available"})
    await cust.request("join_queue")
    await ann.next("assignment_offered", 5)
    assert await error_code(ben, "accept", {"session_id": session_id}) == "already_taken"
    await ann.request("accept", {"session_id": session_id})
    assert await error_code(ben, "accept", {"session_id": session_id}) == "already_taken"
    assert await error_code(ann, "accept", {"session_id": session_id}) == "already_taken"
    assert (
        await error_code(
            ben, "decide", {"session_id": session_id, "outcome": "rejected", "reason_code": "x"}
        )
        == "not_assigned"
    )
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "in_call"
    await asyncio.gather(cust.close(), ann.close(), ben.close())


async def test_malformed_and_oversized_sdp(start_server: StartServer, customer_video) -> None:
    server = await start_server(media={"max_sdp_bytes": 20000})
    cust, op, session_id = await in_call(server)
    good = ClientPeer(customer_video)
    sdp = await good.offer()
    cases = {
        "garbage": "this is not sdp",
        "no fingerprint": "\n".join(x for x in sdp.splitlines() if "fingerprint" not in x),
        "no ice": "\n".join(x for x in sdp.splitlines() if "ice-ufrag" not in x),
        "no vp8": sdp.replace("VP8", "XYZ"),
        "oversized": sdp + "a=x-padding:" + "x" * 20000 + "\r\n",
        "truncated": sdp[: len(sdp) // 3],
    }
    for name, bad in cases.items():
        code = await error_code(cust, "webrtc_offer", {"type": "offer", "sdp": bad})
        assert code == "invalid_sdp", name
    # every refused offer closed the connection: a candidate now has nothing to join
    code = await error_code(cust, "webrtc_candidate", {"candidate": "candidate:garbage"})
    assert code == "out_of_order"
    # after all that, the real offer still connects and media flows
    reply = await cust.request("webrtc_offer", {"type": "offer", "sdp": sdp})
    await good.accept_answer(reply["answer"]["sdp"])
    op_peer = ClientPeer(None)
    reply = await op.request("webrtc_offer", {"type": "offer", "sdp": await op_peer.offer()})
    await op_peer.accept_answer(reply["answer"]["sdp"])
    assert await op_peer.wait_frames("video", 5, 15) >= 5
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "in_call"
    await asyncio.gather(good.close(), op_peer.close())
    await asyncio.gather(cust.close(), op.close())


async def test_flood_is_rate_limited_and_others_are_served(start_server: StartServer) -> None:
    server = await start_server(signaling={"events_per_second": 5, "event_burst": 10})
    flooder, _ = await customer(server)
    replies = await asyncio.gather(
        *(
            flooder.sio.call("leave_queue", {}, namespace="/customer", timeout=10)
            for _ in range(40)
        ),
        return_exceptions=True,
    )
    codes = [r["error"]["code"] for r in replies if isinstance(r, dict) and not r["ok"]]
    assert codes.count("rate_limited") >= 25
    other, _ = await customer(server)
    assert (await other.request("join_queue"))["position"] == 1
    await asyncio.gather(flooder.close(), other.close())


async def test_http_errors_have_stable_codes(server: Server) -> None:
    await server.operator("olga")
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, **kw) -> tuple[int, str]:
            async with http.request(method, server.url + path, **kw) as r:
                body = await r.json()
                return r.status, body.get("error", {}).get("code", "")

        assert await call("POST", "/api/operator/login", data="{not json") == (400, "invalid_json")
        assert await call("POST", "/api/operator/login", json=["x"]) == (400, "invalid_json")
        assert await call(
            "POST", "/api/operator/login", json={"username": "olga", "password": "x" * 300}
        ) == (400, "invalid_payload")
        assert await call(
            "POST", "/api/operator/login", json={"username": "olga", "password": "wrong password"}
        ) == (401, "invalid_credentials")
        assert await call(
            "POST", "/api/operator/login", json={"username": "nobody", "password": "wrong password"}
        ) == (401, "invalid_credentials")
        assert await call("GET", "/api/operator/me") == (401, "unauthorized")
        assert await call("POST", "/api/invitations", json={}) == (401, "unauthorized")
        assert await call("GET", "/nope") == (404, "not_found")
        assert await call(
            "POST",
            "/api/operator/login",
            data="x" * 300_000,
            headers={"Content-Type": "application/json"},
        ) == (413, "payload_too_large")
        token = await login(server.url, "olga", PASSWORD)
        auth = {"Authorization": f"Bearer {token}"}
        assert await call(
            "POST",
            "/api/invitations",
            headers=auth,
            json={"email": "a@example.org", "phone": "+391234567"},
        ) == (403, "forbidden")


async def test_login_throttle(start_server: StartServer) -> None:
    server = await start_server(operators={"max_failed_logins": 3})
    await server.operator("olga")
    for _ in range(3):
        with pytest.raises(ProtocolError) as err:
            await login(server.url, "olga", "wrong password")
        assert err.value.code == "invalid_credentials"
    with pytest.raises(ProtocolError) as err:
        await login(server.url, "olga", PASSWORD)  # even the right one, while it waits
    assert err.value.code == "login_throttled"


async def test_personal_data_is_never_cached_and_the_page_connects_only_home(
    server: Server,
) -> None:
    """Issue 14 (web hardening): every API answer (errors included) carries
    ``Cache-Control: no-store``; the pages' CSP lets scripts connect to their own origin
    only (no ``ws:`` to any host)."""
    await server.operator("olga")
    invitation = await server.invite()
    token = invitation.url.split("#", 1)[1]
    async with aiohttp.ClientSession() as http:
        cookie = await login(server.url, "olga", PASSWORD)
        for path, headers in (
            (f"/api/sessions/{invitation.session_id}", {"Cookie": f"videoid_login={cookie}"}),
            ("/api/onboarding", {"Authorization": f"Bearer {token}"}),
            ("/api/signing", {"Authorization": f"Bearer {token}"}),
            (f"/api/sessions/{invitation.session_id}", {}),  # refused: 401
        ):
            async with http.get(server.url + path, headers=headers) as r:
                assert r.headers.get("Cache-Control") == "no-store", (path, r.status)
        async with http.get(server.url + "/operator") as r:
            csp = r.headers["Content-Security-Policy"]
    assert "connect-src 'self';" in csp and "ws:" not in csp
