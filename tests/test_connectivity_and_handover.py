"""The connectivity test through the server (real aiortc peers on both ends) and the
"continue on your phone" handover: a short-lived, single-use code exchanged for a
device token that opens the same session."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from videoid.bots.onboarding_client import OnboardingClient, OnboardingError
from videoid.bots.signaling_client import SignalingClient
from videoid.errors import InvitationError

from .conftest import PHOTOS, Server, StartServer

UP_TO_SELFIE = ("consented", "selfie_taken", "av_tested")
AV_OK = {"camera": True, "microphone": True, "speaker": True}


async def at_av_test(server: Server) -> tuple[OnboardingClient, str]:
    """A customer who has consented and taken a selfie (no document step required)."""
    invitation = await server.invite()
    client = OnboardingClient(server.url, invitation.token)
    await client.consent("en")
    # without a document there is nothing to match; the selfie checks still run
    assert (await client.selfie((PHOTOS / "obama.jpg").read_bytes())) == {"accepted": True}
    return client, invitation.session_id


async def test_a_slow_connection_fails_the_test_and_blocks_the_av_step(
    start_server: StartServer,
) -> None:
    server = await start_server(
        onboarding={"required_steps": UP_TO_SELFIE, "min_bitrate_kbps": 10_000_000.0}
    )
    client, session_id = await at_av_test(server)
    try:
        result = await client.connectivity_test()
        assert result["passed"] is False and result["problems"] == ["low_bandwidth"]
        assert result["bitrate_kbps"] > 0 and result["rtt_ms"] is not None
        with pytest.raises(OnboardingError) as err:
            await client.av_test(AV_OK)
        assert err.value.code == "connectivity_test_failed"
        # the server kept its own measurement, the same the client was told
        stored = (await server.services.repo.results(session_id))["connectivity"]
        assert stored["bitrate_kbps"] == result["bitrate_kbps"]
        assert (await client.overview())["state"] == "selfie_taken"
    finally:
        await client.close()


async def test_the_probe_takes_one_data_channel_only_and_only_at_its_step(
    start_server: StartServer,
) -> None:
    server = await start_server(onboarding={"required_steps": UP_TO_SELFIE})
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as early:
        with pytest.raises(OnboardingError) as err:
            await early.connectivity_test()
        assert err.value.code == "step_not_allowed"
    client, _ = await at_av_test(server)
    try:
        media = RTCPeerConnection()
        media.addTransceiver("audio", direction="sendrecv")
        await media.setLocalDescription(await media.createOffer())
        for body in (
            {"type": "offer", "sdp": media.localDescription.sdp},
            {"type": "offer", "sdp": "v=0\r\nnot sdp"},
            {"type": "offer", "sdp": 42},
        ):
            with pytest.raises(OnboardingError) as err:
                await client._call("POST", "/api/onboarding/connectivity", json=body)
            assert err.value.code == "invalid_sdp" and err.value.status == 400
        await media.close()
        with pytest.raises(OnboardingError) as err:
            await client._call("POST", "/api/onboarding/connectivity", json={"sdp": "x"})
        assert err.value.code == "invalid_payload"
        # a good run after the bad ones
        assert (await client.connectivity_test())["passed"] is True
        assert (await client.av_test(AV_OK)) == {"ok": True}
    finally:
        await client.close()


async def _post(url: str, body: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(url, json=body) as response:
            return response.status, await response.json()


async def test_a_handover_code_works_once_and_expires(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": UP_TO_SELFIE})
    invitation = await server.invite()
    status, link = await _post(f"{server.url}/api/onboarding/handover", {}, invitation.token)
    assert status == 200 and link["qr"].startswith("data:image/svg+xml;base64,")
    code = link["url"].split("#handover=")[1]
    assert link["url"].startswith(f"{server.url}/join#handover=")
    now = server.services.clock.now()
    assert 0 < link["expires_at"] - now <= 600

    status, claimed = await _post(f"{server.url}/api/onboarding/handover/claim", {"token": code})
    assert status == 200
    device = claimed["token"]
    # the device token opens the same session, over HTTP and Socket.IO
    async with OnboardingClient(server.url, device) as phone:
        assert (await phone.overview())["session_id"] == invitation.session_id
        await phone.consent("pl")
    socket = SignalingClient(server.url, "/customer")
    await socket.connect({"token": device})
    assert (await socket.next("session", 5))["session_id"] == invitation.session_id
    await socket.close()
    # once only
    status, body = await _post(f"{server.url}/api/onboarding/handover/claim", {"token": code})
    assert status == 401 and body["error"]["code"] == "handover_invalid"
    # a code not claimed within its minutes is dead
    _, second = await _post(f"{server.url}/api/onboarding/handover", {}, invitation.token)
    late = now + 11 * 60
    with pytest.raises(InvitationError) as err:
        await server.services.invitations.claim_handover(second["url"].split("=")[1], late)
    assert err.value.code == "handover_invalid"
    for bad in ({"token": "x"}, {"token": 7}, {}, ["token"]):
        status, body = await _post(f"{server.url}/api/onboarding/handover/claim", bad)
        assert status == 401 and body["error"]["code"] == "handover_invalid", bad
    # the invitation itself still works on the computer
    async with OnboardingClient(server.url, invitation.token) as desktop:
        assert (await desktop.overview())["state"] == "consented"


async def test_no_handover_once_queued(start_server: StartServer) -> None:
    server = await start_server()
    invitation = await server.invite()
    customer = SignalingClient(server.url, "/customer")
    await customer.connect({"token": invitation.token})
    await customer.request("join_queue")
    status, body = await _post(f"{server.url}/api/onboarding/handover", {}, invitation.token)
    assert status == 409 and body["error"]["code"] == "step_not_allowed"
    await customer.close()


async def test_a_refused_field_names_itself(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": ("consented", "data_confirmed")})
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("en")
        fields = {
            "surname": "Rossi",
            "given_names": "Маша",
            "document_number": "AB123",
            "date_of_birth": "1980-01-01",
            "date_of_expiry": "2030-01-01",
            "nationality": "UTO",
            "sex": "F",
            "email": "ada@example.org",
            "phone": "+393471234567",
        }
        with pytest.raises(OnboardingError) as err:
            await client.confirm_data(fields)
        assert err.value.body["error"]["field"] == "given_names"
        assert err.value.code == "invalid_script"
        with pytest.raises(OnboardingError) as err:
            await client.confirm_data({**fields, "given_names": "Masha", "phone": "12"})
        assert err.value.body["error"] == {
            "code": "invalid_phone",
            "message": "phone: international format, e.g. +393471234567",
            "field": "phone",
        }
