"""A call through Debian's coturn (``turnserver``) with time-limited REST credentials
(``use-auth-secret``): the server forces relay, so the customer's side offers and uses
only relay candidates, and media still flows both ways (issue 14, ASVS V17, R20)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.onboarding_client import OnboardingClient
from videoid.bots.operator_bot import OperatorBot

from .conftest import PASSWORD, StartServer, free_port


@dataclass
class Coturn:
    port: int
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


def _binding_answered(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    """coturn on a free loopback port, REST credentials with a fresh static secret."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed: run ./scripts/setup --test")
    port, secret, log = free_port(), secrets.token_hex(16), tmp_path / "turnserver.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary,
            "-n",  # no configuration file: everything is here
            "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            "--realm=videoid.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-tcp-relay",
            f"--userdb={tmp_path / 'turndb'}",
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            "--log-file=stdout",
            "--simple-log",
            "--verbose",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        for _ in range(100):
            if await asyncio.to_thread(_binding_answered, port):
                break
            if process.returncode is not None:
                pytest.fail(f"turnserver exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        else:
            pytest.fail("turnserver did not answer STUN within 10 s")
        yield Coturn(port, secret, log)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_a_relay_only_customer_calls_through_coturn(
    start_server: StartServer,
    coturn: Coturn,
    customer_video,
    operator_video,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(
        media={
            "turn_urls": [coturn.url],
            "turn_secret": coturn.secret,
            "turn_ttl_seconds": 600.0,
            "force_relay": True,
        }
    )
    await server.operator("olga")
    invitation = await server.invite()
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, watch_seconds=1.0, min_video_frames=10
    )
    # the customer reads the call's SMS code back in the chat, as in run_call
    customer = CustomerBot(
        invitation.url, customer_video, sms_outbox=server.services.sms.path, phone="+393471234567"
    )
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=40))
    try:
        await customer.connect()
        await customer.join_queue()
        await customer.wait_call(30)
        ice = customer._ice
        assert ice is not None and ice["ice_transport_policy"] == "relay"
        [turn] = [s for s in ice["ice_servers"] if s["urls"] == [coturn.url]]
        expiry, subject = turn["username"].split(":")
        assert subject == invitation.session_id
        assert 0 < int(expiry) - server.services.clock.now() <= 600

        await customer.connect_media()
        assert customer.peer is not None
        pc = customer.peer.pc
        offered = re.findall(
            r"a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ (\w+)", pc.localDescription.sdp
        )
        # relay only: the customer's own addresses are never offered
        assert offered and {typ for _, _, typ in offered} == {"relay"}
        transport = pc.getTransceivers()[0].sender.transport.transport
        assert {c.type for c in transport.iceGatherer.getLocalCandidates()} == {"relay"}
        assert await customer.peer.wait_frames("video", 10, 30) >= 10
        assert transport.state == "completed"
        # so the pair in use is relay on the customer's side: its every local candidate is

        outcome = await customer.wait_outcome(40)
        calls = await asyncio.wait_for(op_task, 30)
    finally:
        await customer.close()
        if not op_task.done():
            op_task.cancel()
            await asyncio.wait([op_task])
    assert outcome == "approved"
    assert customer.result.video_frames_received >= 10
    assert calls[0].video_frames_received >= 10 and calls[0].audio_frames_received >= 20
    # coturn authenticated the REST username and relayed the call's packets (it logs
    # an allocation's use once the client released it)
    relayed: list[int] = []
    for _ in range(100):
        log = coturn.text()
        relayed = [int(n) for n in re.findall(r"peer usage: .*?rp=(\d+)", log)]
        if relayed and max(relayed) > 100:
            break
        await asyncio.sleep(0.1)
    assert f"username=<{turn['username']}>" in log
    # neither the secret nor a credential is in any log line, aiortc's and aioice's too
    assert caplog.records and coturn.secret not in caplog.text
    assert turn["credential"] not in caplog.text
    assert relayed and max(relayed) > 100, log[-3000:]


# Every RTCPeerConnection the page makes, kept where the test can read its stats.
RECORD_PEERS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (config) {
    const pc = new Native(config);
    window.__peers.push({ pc, config });
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

SELECTED_PAIR = """
async () => {
  const { pc, config } = window.__peers[window.__peers.length - 1];
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  const pair = transport && stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = pair && stats.find((s) => s.id === pair.localCandidateId);
  return {
    policy: config.iceTransportPolicy,
    state: pc.connectionState,
    local: local ? local.candidateType : null,
    sent: pair ? pair.bytesSent : 0,
    received: pair ? pair.bytesReceived : 0,
    offered: [...pc.localDescription.sdp.matchAll(/ typ (\\w+)/g)].map((m) => m[1]),
  };
}
"""


@pytest.mark.browser
async def test_a_relay_only_customer_in_chromium_calls_through_coturn(
    start_server: StartServer, coturn: Coturn, customer_y4m: Path, operator_video
) -> None:
    from .test_browser_call import chromium, wait_frames

    server = await start_server(
        media={"turn_urls": [coturn.url], "turn_secret": coturn.secret, "force_relay": True}
    )
    await server.operator("olga")
    invitation = await server.invite(phone="+393471234567")
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, watch_seconds=600, min_video_frames=10
    )
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=60))
    try:
        async with chromium(customer_y4m) as browser:
            page = await (await browser.new_context()).new_page()
            await page.add_init_script(RECORD_PEERS)
            await page.goto(invitation.url)
            await page.wait_for_selector("#join:enabled", timeout=15000)
            await page.click("#join")
            await page.wait_for_selector("#screen-call:visible", timeout=20000)
            # the operator's video reaches the customer's page, through coturn
            assert await wait_frames(page, "#remote", 15, 30) >= 15
            stats = await page.evaluate(SELECTED_PAIR)
            assert stats["policy"] == "relay" and stats["state"] == "connected"
            assert stats["offered"] and set(stats["offered"]) == {"relay"}
            assert stats["local"] == "relay"
            assert stats["sent"] > 10_000 and stats["received"] > 10_000

        assert invitation.session_id in coturn.text()
    finally:
        op_task.cancel()
        await asyncio.wait([op_task])


async def test_the_connectivity_test_takes_the_relay_too(
    start_server: StartServer, coturn: Coturn
) -> None:
    """With relay forced, the connectivity test measures the path the call will take."""
    server = await start_server(
        onboarding={"required_steps": ("av_tested",)},
        media={"turn_urls": [coturn.url], "turn_secret": coturn.secret, "force_relay": True},
    )
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        overview = await client.overview()
        assert overview["ice_transport_policy"] == "relay"
        assert overview["ice_servers"][0]["username"].endswith(f":{invitation.session_id}")
        result = await client.connectivity_test()
    assert result["passed"] is True and result["pings_answered"] == 5
    assert f"username=<{overview['ice_servers'][0]['username']}>" in coturn.text()
