"""The server's ICE rules (issue 14.10, ASVS V17): it sends no STUN check to loopback or
private addresses a customer names unless allowed, still connects such a customer
through the checks the customer sends, and offers only the announced addresses."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiortc.sdp import SessionDescription

from videoid.bots.media_client import ClientPeer
from videoid.config import load_config
from videoid.errors import ConfigError
from videoid.media.host_addresses import host_addresses
from videoid.media.ice_policy import IcePolicy, is_private_peer
from videoid.media.participant_peer import ParticipantPeer

CANDIDATE = re.compile(r"^a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ (\w+)", re.M)


class Counter(asyncio.DatagramProtocol):
    """A UDP socket we own: counts what reaches it."""

    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.packets += 1


async def listen() -> tuple[asyncio.DatagramTransport, Counter, int]:
    transport, counter = await asyncio.get_running_loop().create_datagram_endpoint(
        Counter, local_addr=("127.0.0.1", 0)
    )
    return transport, counter, transport.get_extra_info("sockname")[1]


def with_candidate(sdp: str, line: str) -> str:
    """The offer with ``line`` added to each media section's candidates."""
    return re.sub(r"(a=end-of-candidates\r\n)", f"{line}\r\n\\1", sdp)


@pytest.mark.parametrize("allowed", [False, True])
async def test_a_loopback_candidate_is_checked_only_when_allowed(allowed: bool) -> None:
    offered, offered_count, offered_port = await listen()
    trickled, trickled_count, trickled_port = await listen()
    client = ClientPeer(None, ice={"ice_servers": []})
    server = ParticipantPeer("test", policy=IcePolicy(allow_private_peers=allowed))
    try:
        sdp = with_candidate(
            await client.offer(),
            f"a=candidate:9 1 udp 2130706431 127.0.0.1 {offered_port} typ host",
        )
        # a trickling client: more candidates may follow the offer
        await server.answer(sdp.replace("a=end-of-candidates\r\n", ""))
        await server.add_candidate(
            f"candidate:8 1 udp 2130706431 127.0.0.1 {trickled_port} typ host", "0", 0
        )
        await asyncio.sleep(2.0)  # checks start at once and repeat within 0.5 s
        if allowed:  # the control: the same offer does reach our sockets
            assert offered_count.packets > 0 and trickled_count.packets > 0
        else:
            assert offered_count.packets == 0 and trickled_count.packets == 0
    finally:
        await server.close()
        await client.close()
        offered.close()
        trickled.close()


async def test_a_customer_naming_only_private_addresses_still_connects() -> None:
    """Every candidate dropped: the server learns the customer's address from the
    checks the customer sends (peer-reflexive) and the connection is made."""
    client = ClientPeer(None, ice={"ice_servers": []})
    server = ParticipantPeer("test", policy=IcePolicy(allow_private_peers=False))
    try:
        offer = await client.offer()
        assert CANDIDATE.search(offer)
        hidden = CANDIDATE.sub(
            lambda m: m.group(0).replace(f" {m.group(1)} ", " 10.255.255.1 ", 1), offer
        )
        assert {c[0] for c in CANDIDATE.findall(hidden)} == {"10.255.255.1"}
        await client.accept_answer(await server.answer(hidden))
        for _ in range(100):
            if client.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        assert client.pc.connectionState == "connected"
        assert server.pc is not None and server.pc.connectionState == "connected"
    finally:
        await server.close()
        await client.close()


async def test_the_server_offers_only_announced_addresses() -> None:
    client = ClientPeer(None, ice={"ice_servers": []})
    try:
        offer = await client.offer()
        # without announced addresses: every address of the machine but loopback
        default = ParticipantPeer("default", policy=IcePolicy())
        answer = await default.answer(offer)
        assert "127.0.0.1" not in {c[0] for c in CANDIDATE.findall(answer)}
        await default.close()

        # behind a 1:1 NAT: bound on the private address, offered as the public one
        nat = ParticipantPeer(
            "nat", policy=IcePolicy(announced_addresses=("203.0.113.7/127.0.0.1",))
        )
        answer = await nat.answer(offer)
        assert {c[0] for c in CANDIDATE.findall(answer)} == {"203.0.113.7"}
        assert all(m.host in (None, "203.0.113.7") for m in SessionDescription.parse(answer).media)
        assert nat.pc is not None
        gatherer = nat.pc.getTransceivers()[0].sender.transport.transport.iceGatherer
        assert {c.ip for c in gatherer.getLocalCandidates()} == {"127.0.0.1"}
        await nat.close()

        # announced as it is: a client reaches the server on that address only
        plain = ParticipantPeer("plain", policy=IcePolicy(announced_addresses=("127.0.0.1",)))
        answer = await plain.answer(offer)
        assert {c[0] for c in CANDIDATE.findall(answer)} == {"127.0.0.1"}
        await client.accept_answer(answer)
        for _ in range(100):
            if client.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        assert client.pc.connectionState == "connected"
        await plain.close()
    finally:
        await client.close()


async def test_the_address_restriction_holds_only_where_it_is_set() -> None:
    import aioice.ice

    with host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, True)


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.20.0.1", True),
        ("192.168.1.10", True),
        ("100.64.0.1", True),
        ("198.18.0.5", True),
        ("192.0.0.8", True),
        ("64:ff9b:1::a00:1", True),
        ("169.254.1.1", True),
        ("fe80::1", True),
        ("fd00::2", True),
        ("0.0.0.0", True),
        ("::", True),
        ("224.0.0.251", True),
        ("ff02::fb", True),
        ("::ffff:127.0.0.1", True),
        ("2002:c0a8:0101::1", True),  # 6to4 of 192.168.1.1
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", False),  # NAT64 of 8.8.8.8
        ("1f0e8a7c-5d3b-4f5e-9a1b-2c3d4e5f6a7b.local", True),
        ("turn.example.org", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("172.32.0.1", False),
    ],
)
def test_which_addresses_the_server_does_not_check(host: str, private: bool) -> None:
    assert is_private_peer(host) is private


def test_the_settings_are_checked_at_start() -> None:
    def media(**values: object) -> None:
        load_config(environ={}, overrides={"media": values})

    with pytest.raises(ConfigError, match="force_relay needs"):
        media(force_relay=True)
    with pytest.raises(ConfigError, match="turn_secret"):
        media(turn_urls=["turn:turn.example.org:3478"])
    with pytest.raises(ConfigError, match="not a turn"):
        media(turn_urls=["stun:turn.example.org"], turn_secret="s")
    with pytest.raises(ConfigError, match="announced_addresses"):
        media(announced_addresses=["turn.example.org"])
    with pytest.raises(ConfigError, match="mixes"):
        media(announced_addresses=["203.0.113.7/fd00::2"])
    config = load_config(
        environ={"VIDEOID_MEDIA_TURN_SECRET": "s3cret"},
        overrides={"media": {"turn_urls": ["turn:turn.example.org:3478"]}},
    )
    assert "s3cret" not in repr(config)  # the secret is not in any printed configuration
