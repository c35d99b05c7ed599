"""After calls end and everybody leaves, nothing of them stays in the server's memory:
no peer connection, forwarded track, tap, relayed track or live session, nothing in the
call center's maps, the namespaces' or the socket server's, whichever way it ended."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiortc import RTCPeerConnection

from videoid.bots.operator_bot import answer_checklist, login
from videoid.bots.signaling_client import SignalingClient
from videoid.desk.call_desk import Seat
from videoid.media import EncodedTap, ForwardedTrack, ParticipantPeer, RelayedTrack

from .conftest import PASSWORD, StartServer
from .test_call_end_to_end import run_call

KINDS = (ParticipantPeer, ForwardedTrack, RelayedTrack, EncodedTap, Seat, RTCPeerConnection)


def alive() -> dict[str, int]:
    gc.collect()
    counts = {k.__name__: 0 for k in KINDS}
    for obj in gc.get_objects():
        for kind in KINDS:
            if isinstance(obj, kind):
                counts[kind.__name__] += 1
    return counts


@pytest.mark.parametrize("forwarding", ["encoded", "reencode"])
async def test_calls_leave_nothing_behind(
    start_server: StartServer, customer_video, operator_video, forwarding: str
) -> None:
    server = await start_server(media={"forwarding": forwarding})
    before = alive()
    for i in range(3):
        await run_call(server, customer_video, operator_video, name=f"op{i}")
    await asyncio.sleep(0.5)  # let closing tasks finish
    after = alive()
    assert after == before, (before, after)


async def test_every_way_a_session_ends_leaves_nothing_held(start_server: StartServer) -> None:
    """Left the queue, gone while waiting, an offer nobody took, a customer who never
    joined the call, one who dropped and did not come back, an operator who left, a
    decision: once everybody is gone the call center, the namespaces and the socket
    server hold nothing of them (issue 20.9)."""
    server = await start_server(
        call={"reconnect_seconds": 0.5, "connect_seconds": 1.0},
        operators={"offer_timeout_seconds": 1.0},
    )
    center = server.services.center
    await server.operator("olga")
    operator = SignalingClient(server.url, "/operator")
    await operator.connect({"token": await login(server.url, "olga", PASSWORD)})

    async def customer(n: int) -> SignalingClient:
        invitation = await server.invite(f"c{n}@example.org", f"+39347123{n:04d}")
        client = SignalingClient(server.url, "/customer")
        await client.connect({"token": invitation.token})
        await client.next("session", 10)
        await client.request("join_queue")
        return client

    async def offered() -> str:
        await operator.request("set_presence", {"status": "available"})
        return str((await operator.next("assignment_offered", 10))["session_id"])

    async def until_idle() -> None:
        for _ in range(100):
            if center.operator_session(operator_id) is None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the operator was not released")

    operator_id = (await operator.next("hello", 10))["operator"]["id"]
    # left the queue; gone while waiting
    c = await customer(1)
    await c.request("leave_queue")
    await c.close()
    await (await customer(2)).close()
    # an offer nobody took (the operator is paused by it), then the customer goes
    c = await customer(3)
    await offered()
    await operator.next("assignment_withdrawn", 10)
    await c.close()
    # accepted, but the customer never joined the call
    c = await customer(4)
    await operator.request("accept", {"session_id": await offered()})
    await operator.next("call_ended", 10)
    await c.close()
    # accepted; the customer dropped and did not come back in time
    c = await customer(5)
    await operator.request("accept", {"session_id": await offered()})
    await c.close()
    await until_idle()
    # decided
    c = await customer(6)
    session_id = await offered()
    await operator.request("accept", {"session_id": session_id})
    items = (await operator.request("call_view"))["checklist"]["items"]
    await answer_checklist(operator, items, otp="failed", others="failed")
    reason = {"session_id": session_id, "outcome": "rejected", "reason_code": "document_invalid"}
    await operator.request("decide", reason)
    await c.close()
    # the operator left mid-call, then the customer
    c = await customer(7)
    await operator.request("accept", {"session_id": await offered()})
    await operator.close()
    await asyncio.sleep(0.3)
    await c.close()

    for _ in range(50):  # disconnections are handled as they arrive
        if not any(center.held().values()):
            break
        await asyncio.sleep(0.1)
    assert center.held() == dict.fromkeys(center.held(), 0)
    sio = server.services.sio
    for namespace in ("/customer", "/operator"):
        assert not sio.namespace_handlers[namespace]._buckets
        assert not list(sio.manager.get_participants(namespace, None))
