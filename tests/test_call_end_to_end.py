"""A whole call through an in-process server: real Socket.IO clients, real aiortc peers,
media through the server in both directions, the decision persisted."""

from __future__ import annotations

import asyncio

import pytest

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot

from .conftest import PASSWORD, Server, StartServer


async def run_call(
    server: Server,
    customer_video,
    operator_video,
    decision: str = "approved",
    name: str = "olga",
    watch_seconds: float = 1.5,
    before_call=None,
):
    """A real call, decided; ``before_call(server, invitation)`` runs before the customer
    joins (what onboarding would have recorded before the call)."""
    await server.operator(name)
    invitation = await server.invite()
    if before_call is not None:
        await before_call(server, invitation)
    operator = OperatorBot(
        server.url,
        name,
        PASSWORD,
        video=operator_video,
        decision=decision,
        watch_seconds=watch_seconds,
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


async def test_a_call_whose_customer_joined_outlasts_connect_seconds(
    start_server: StartServer, customer_video, operator_video
) -> None:
    """call.connect_seconds bounds only the wait for the customer to join the accepted
    call (issue 14.9): once their media is connected the call goes on past it."""
    server = await start_server(call={"connect_seconds": 2.0})
    invitation, result, calls = await run_call(
        server, customer_video, operator_video, watch_seconds=4.0
    )
    assert result.outcome == "approved"
    assert calls[0].video_frames_received >= 10
    states = [to for _, to, _, _ in await server.services.repo.transitions(invitation.session_id)]
    assert states == ["created", "waiting", "assigned", "in_call", "approved"]
