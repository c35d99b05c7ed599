"""The waiting room through a running server with real Socket.IO clients: order and
positions, the random draw recorded (R11), requeue at the head when the operator drops,
customers leaving, offers timing out."""

from __future__ import annotations

import asyncio

import pytest

from videoid.bots.operator_bot import login
from videoid.bots.signaling_client import ProtocolError, SignalingClient

from .conftest import PASSWORD, Server, StartServer


async def customer(server: Server) -> tuple[SignalingClient, str]:
    invitation = await server.invite()
    client = SignalingClient(server.url, "/customer")
    await client.connect({"token": invitation.token})
    session = await client.next("session", 5)
    assert session["session_id"] == invitation.session_id and session["state"] == "created"
    return client, invitation.session_id


async def operator(server: Server, username: str) -> tuple[SignalingClient, int]:
    operator_id = await server.operator(username)
    client = SignalingClient(server.url, "/operator")
    await client.connect({"token": await login(server.url, username, PASSWORD)})
    hello = await client.next("hello", 5)
    assert hello["presence"] == "paused"
    return client, operator_id


async def test_positions_order_and_live_updates(server: Server) -> None:
    clients = [await customer(server) for _ in range(3)]
    for i, (client, _) in enumerate(clients, start=1):
        reply = await client.request("join_queue")
        assert reply["position"] == i and reply["state"] == "waiting"
        assert reply["estimated_wait_seconds"] > 0
    # the first leaves: the others move up and are told
    await clients[0][0].request("leave_queue")
    assert (await clients[1][0].next("queue", 5))["position"] == 1
    assert (await clients[2][0].next("queue", 5))["position"] == 2
    # an operator becomes available: the head of the queue is offered first
    op, _ = await operator(server, "olga")
    await op.request("set_presence", {"status": "available"})
    offered = await op.next("assignment_offered", 5)
    assert offered["session_id"] == clients[1][1]
    await clients[1][0].next("assigned", 5)
    for client, _ in (*clients, (op, 0)):
        await client.close()


async def test_random_assignment_is_recorded(server: Server) -> None:
    operators = [await operator(server, name) for name in ("ann", "ben", "cat")]
    for client, _ in operators:
        await client.request("set_presence", {"status": "available"})
    cust, session_id = await customer(server)
    await cust.request("join_queue")
    await cust.next("assigned", 5)
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "assigned"
    [draw] = await server.services.repo.assignments(session_id)
    assert draw.candidates == tuple(sorted(op_id for _, op_id in operators))
    assert draw.operator_id == record.operator_id == draw.candidates[draw.index]
    # the operator drawn is the one that got the offer
    chosen = next(c for c, op_id in operators if op_id == draw.operator_id)
    assert (await chosen.next("assignment_offered", 5))["session_id"] == session_id
    for client, _ in (*operators, (cust, 0)):
        await client.close()


async def test_operator_drop_requeues_customer_at_head(server: Server) -> None:
    first, first_id = await customer(server)
    second, _second_id = await customer(server)
    ann, _ = await operator(server, "ann")
    await first.request("join_queue")
    await ann.request("set_presence", {"status": "available"})
    await ann.next("assignment_offered", 5)
    await ann.request("accept", {"session_id": first_id})
    await first.next("call_started", 5)
    await second.request("join_queue")
    assert (await server.services.repo.find_session(id=first_id)).state == "in_call"  # type: ignore[union-attr]

    await ann.close()  # the operator's connection drops mid-call
    ended = await first.next("call_ended", 5)
    assert ended == {"reason": "operator_left", "state": "waiting"}
    assert (await first.next("queue", 5))["position"] == 1
    assert (await second.next("queue", 5))["position"] == 2
    states = [to for _, to, _, _ in await server.services.repo.transitions(first_id)]
    assert states[-2:] == ["in_call", "waiting"]

    ben, _ = await operator(server, "ben")
    await ben.request("set_presence", {"status": "available"})
    assert (await ben.next("assignment_offered", 5))["session_id"] == first_id
    for client in (first, second, ben):
        await client.close()


async def test_customer_disconnect_while_assigned_frees_operator(server: Server) -> None:
    cust, session_id = await customer(server)
    ann, _ = await operator(server, "ann")
    await ann.request("set_presence", {"status": "available"})
    await cust.request("join_queue")
    await ann.next("assignment_offered", 5)
    await cust.close()
    withdrawn = await ann.next("assignment_withdrawn", 5)
    assert withdrawn["reason"] == "customer_left"
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "created" and record.operator_id is None
    # the operator is available again and gets the next customer
    nxt, next_id = await customer(server)
    await nxt.request("join_queue")
    assert (await ann.next("assignment_offered", 5))["session_id"] == next_id
    await ann.close()
    await nxt.close()


async def test_offer_timeout_pauses_operator_and_requeues(start_server: StartServer) -> None:
    server = await start_server(operators={"offer_timeout_seconds": 0.5})
    cust, session_id = await customer(server)
    ann, _ = await operator(server, "ann")
    await ann.request("set_presence", {"status": "available"})
    await cust.request("join_queue")
    await ann.next("assignment_offered", 5)
    withdrawn = await ann.next("assignment_withdrawn", 5)  # nobody accepted
    assert withdrawn["reason"] == "offer_timeout" and withdrawn["presence"] == "paused"
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "waiting"
    assert server.services.center.snapshot()["waiting"][0]["session_id"] == session_id
    await asyncio.gather(cust.close(), ann.close())


async def test_restart_recovers_sessions_left_in_a_call(
    start_server: StartServer, tmp_path
) -> None:
    """A process killed mid-call leaves its session "in_call" in the database, its
    recording open, and maybe a decision it had no time to seal; the next start puts
    the session back where the customer can queue again, closes the recording as
    interrupted, seals the decision, and audits each (issue 20.11)."""
    from videoid.recordings import stream_crypto
    from videoid.session import IdentificationSession, Outcome

    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    server = await start_server(database_url=db)
    operator_id = await server.operator("ann")
    invitation = await server.invite()
    decided = await server.invite()
    repo = server.services.repo
    machine = IdentificationSession(invitation.session_id)
    machine.enter_queue(1.0)
    machine.assign(operator_id, 2.0)
    machine.start_call(operator_id, 3.0)
    await repo.save_events(
        machine.session_id,
        machine.pop_events(),
        state="in_call",
        ready_state="created",
        operator_id=operator_id,
    )
    wrapper = server.services.objects.files.wrapper
    wrapped = wrapper.wrap(bytes(32), stream_crypto.key_context("r" * 32))
    await repo.add_recording(
        "r" * 32, invitation.session_id, "xx/r.vrec", wrapper.key_id, wrapped, 3.0
    )
    other = IdentificationSession(decided.session_id)
    other.enter_queue(1.0)
    other.assign(operator_id, 2.0)
    other.start_call(operator_id, 3.0)
    other.decide(operator_id, Outcome.SUSPENDED, "needs_review", "", 4.0)
    await repo.save_events(
        other.session_id,
        other.pop_events(),
        state="suspended",
        ready_state="created",
        operator_id=operator_id,
    )  # and stopped before its seal
    data_dir = str(server.services.config.data_path)
    await server.stop()

    again = await start_server(database_url=db, server={"data_dir": data_dir})
    record = await again.services.repo.find_session(id=invitation.session_id)
    assert record is not None and record.state == "created" and record.operator_id is None
    audited = {
        (e["action"], e["actor"], str(e["details"]))
        for e in await again.services.repo.audit_of(invitation.session_id)
    }
    moved = str({"from": "in_call", "to": "created"})
    assert ("transition", "system", moved) in audited, audited
    assert ("recording_interrupted", "system", str({"recording": "r" * 32})) in audited
    [recording] = await again.services.repo.recordings(invitation.session_id)
    assert recording["status"] == "interrupted"
    [seal] = await again.services.evidence.seals(decided.session_id)
    assert seal.body["event"] == "recovered"
    assert (await again.services.evidence.verify(decided.session_id))["ok"]
    sealed = [e for e in await again.services.repo.audit_of(decided.session_id)]
    assert sealed[-1]["action"] == "evidence_sealed" and sealed[-1]["details"]["event"] == (
        "recovered"
    )
    moves = await again.services.repo.transitions(record.id)
    # one move, the system's: the customer did not leave, the server stopped
    assert [(to, actor) for _, to, _, actor in moves[-2:]] == [
        ("in_call", f"operator:{operator_id}"),
        ("created", "system"),
    ]
    # the customer comes back with the same link and queues again
    # and is told, once, that the call was interrupted
    client = SignalingClient(again.url, "/customer")
    await client.connect({"token": invitation.token})
    view = await client.next("session", 5)
    assert view["state"] == "created" and view["interrupted"] is True
    await client.close()
    client = SignalingClient(again.url, "/customer")
    await client.connect({"token": invitation.token})
    assert "interrupted" not in await client.next("session", 5)
    assert (await client.request("join_queue"))["position"] == 1
    await client.close()


async def in_call(
    server: Server, name: str = "ann"
) -> tuple[SignalingClient, SignalingClient, str, str]:
    """A customer in a call with operator ``name`` (signalling only, no media); returns
    the customer's and the operator's clients, the session and the customer's token."""
    invitation = await server.invite()
    cust = SignalingClient(server.url, "/customer")
    await cust.connect({"token": invitation.token})
    await cust.next("session", 5)
    session_id = invitation.session_id
    op, _ = await operator(server, name)
    await cust.request("join_queue")
    await op.request("set_presence", {"status": "available"})
    assert (await op.next("assignment_offered", 5))["session_id"] == session_id
    await op.request("accept", {"session_id": session_id})
    await cust.next("call_started", 5)
    return cust, op, session_id, invitation.token


async def test_a_session_whose_customer_is_gone_is_not_offered(
    start_server: StartServer,
) -> None:
    """Issue 14.9, the ghost: the customer drops in a call, the operator drops within
    the reconnect window. The session goes back to the head of the queue, but is not
    offered until its customer is back (with the same link)."""
    server = await start_server(call={"reconnect_seconds": 30.0})
    cust, ann, session_id, token = await in_call(server)
    await cust.close()
    await ann.next("customer_reconnecting", 5)
    await ann.close()  # within the window

    ben, ben_id = await operator(server, "ben")
    reply = await ben.request("set_presence", {"status": "available"})
    assert reply["presence"] == "available"  # nobody to offer: the customer is gone
    assert server.services.center.operator_session(ben_id) is None
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "waiting" and record.operator_id is None
    [entry] = server.services.center.snapshot()["waiting"]
    assert entry["session_id"] == session_id and entry["customer_connected"] is False

    # the customer comes back with the same link: waiting at the head, and offered
    again = SignalingClient(server.url, "/customer")
    await again.connect({"token": token})
    session = await again.next("session", 5)
    assert session["state"] in ("waiting", "assigned")
    assert (await ben.next("assignment_offered", 5))["session_id"] == session_id
    await ben.request("accept", {"session_id": session_id})
    await again.next("call_started", 5)
    await asyncio.gather(again.close(), ben.close())


async def test_a_gone_customer_who_does_not_come_back_leaves_the_queue(
    start_server: StartServer,
) -> None:
    """After the reconnect window the session leaves the queue for the state the customer
    may queue from again; their page, coming back later, continues from there."""
    server = await start_server(call={"reconnect_seconds": 1.0})
    cust, ann, session_id, token = await in_call(server)
    await cust.close()
    await ann.next("customer_reconnecting", 5)
    await ann.close()
    ben, _ = await operator(server, "ben")
    await ben.request("set_presence", {"status": "available"})
    snapshot = await ben.next("queue_snapshot", 5)
    while snapshot["waiting"]:  # the window runs out (the tick, about once a second)
        snapshot = await ben.next("queue_snapshot", 5)
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "created"
    states = [to for _, to, _, _ in await server.services.repo.transitions(session_id)]
    assert states[-3:] == ["in_call", "waiting", "created"]
    assert ben.drain("assignment_offered") == []

    again = SignalingClient(server.url, "/customer")
    await again.connect({"token": token})
    assert (await again.next("session", 5))["state"] == "created"
    await again.request("join_queue")
    assert (await ben.next("assignment_offered", 5))["session_id"] == session_id
    await asyncio.gather(again.close(), ben.close())


async def test_a_customer_who_does_not_connect_after_the_accept_is_gone(
    start_server: StartServer,
) -> None:
    """An accepted call whose customer's media does not connect within
    call.connect_seconds ends: the operator gets call_ended "customer_gone" and is
    released; the session goes back to where its customer may queue again."""
    server = await start_server(call={"connect_seconds": 0.5})
    cust, ann, session_id, _token = await in_call(server)
    # the customer's page never sends its offer
    ended = await ann.next("call_ended", 5)
    assert ended == {"session_id": session_id, "reason": "customer_gone"}
    told = await cust.next("call_ended", 5)
    assert told == {"reason": "customer_gone", "state": "created"}
    assert (await cust.next("state", 5))["state"] == "created"
    record = await server.services.repo.find_session(id=session_id)
    assert record is not None and record.state == "created" and record.operator_id is None
    states = [to for _, to, _, _ in await server.services.repo.transitions(session_id)]
    assert states[-2:] == ["in_call", "created"]
    with pytest.raises(ProtocolError) as no_call:
        await ann.request(
            "decide",
            {"session_id": session_id, "outcome": "approved", "reason_code": "identity_verified"},
        )
    assert no_call.value.code == "not_assigned"
    # the operator is available again: the customer, queueing again, is offered to her
    await cust.request("join_queue")
    assert (await ann.next("assignment_offered", 5))["session_id"] == session_id
    await asyncio.gather(cust.close(), ann.close())
