"""A whole call through an in-process server: real Socket.IO clients, real aiortc peers,
media through the server in both directions, the decision persisted."""

from __future__ import annotations

import asyncio

import pytest

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot

from .conftest import PASSWORD, Server, StartServer


async def run_call(
    server: Server, customer_video, operator_video, decision: str = "approved", name: str = "olga"
):
    await server.operator(name)
    invitation = await server.invite()
    operator = OperatorBot(
        server.url,
        name,
        PASSWORD,
        video=operator_video,
        decision=decision,
        watch_seconds=1.5,
        min_video_frames=10,
    )
    customer = CustomerBot(
        invitation.url, customer_video, sms_outbox=server.services.sms.path, phone="+393471234567"
    )
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    result = await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    calls = await asyncio.wait_for(op_task, 30)
    return invitation, result, calls


@pytest.mark.parametrize("forwarding", ["encoded", "reencode"])
async def test_call_media_both_ways_and_decision_persisted(
    start_server: StartServer, customer_video, operator_video, forwarding: str
) -> None:
    server = await start_server(media={"forwarding": forwarding})
    invitation, result, calls = await run_call(server, customer_video, operator_video)

    assert result.outcome == "approved"
    # frames really crossed the server both ways (15 fps clips, >1.5 s of call)
    assert calls[0].video_frames_received >= 10
    assert calls[0].audio_frames_received >= 20
    assert result.video_frames_received >= 10
    assert result.audio_frames_received >= 20

    repo = server.services.repo
    record = await repo.find_session(id=invitation.session_id)
    assert record is not None and record.state == "approved"
    decisions = await repo.decisions(invitation.session_id)
    assert [(d.outcome, d.reason_code) for d in decisions] == [("approved", "identity_verified")]
    states = [to for _, to, _, _ in await repo.transitions(invitation.session_id)]
    assert states == ["created", "waiting", "assigned", "in_call", "approved"]
    times = [at for _, _, at, _ in await repo.transitions(invitation.session_id)]
    assert times == sorted(times)
