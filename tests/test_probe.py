"""The connectivity test's limits under concurrency (issue 14.10): 16 at once in all and
one per session, whatever arrives in parallel; the UDP sockets they hold are bounded
and released."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection

from videoid.media.probe import Probes

from .conftest import Server, StartServer

LIMIT = 16


def udp_sockets() -> int:
    """UDP sockets this process holds (its descriptors matched with /proc/net/udp*)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            inodes.update(line.split()[9] for line in f.read().splitlines()[1:])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


async def probe_offer() -> str:
    """One offer as the page makes it (one data channel, labelled probe)."""
    pc = RTCPeerConnection()
    pc.createDataChannel("probe")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()  # nobody answers the server's checks: each test ends at its timeout
    return str(sdp)


async def post_offer(http: aiohttp.ClientSession, url: str, token: str, sdp: str) -> Any:
    async with http.post(
        f"{url}/api/onboarding/connectivity",
        json={"type": "offer", "sdp": sdp},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        body = await response.json()
        return response.status, body.get("error", {}).get("code")


async def tokens(server: Server, n: int) -> list[str]:
    return [(await server.invite(f"c{i}@example.org", f"+3934712{i:05d}")).token for i in range(n)]


async def wait_for(predicate: Any, timeout_seconds: float) -> bool:
    for _ in range(int(timeout_seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def test_parallel_offers_answer_sixteen_at_most_and_release_their_sockets(
    database_url: str, start_server: StartServer
) -> None:
    server = await start_server(
        database_url,
        onboarding={"required_steps": ("av_tested",), "connectivity_timeout_seconds": 4.0},
    )
    sdp = await probe_offer()
    one, *many = await tokens(server, 100)
    probes: Probes = server.services.onboarding._probes
    before = udp_sockets()
    async with aiohttp.ClientSession() as http:
        # several offers of one session at once: one test, the others wait their turn
        same = await asyncio.gather(*(post_offer(http, server.url, one, sdp) for _ in range(5)))
        assert sorted(same) == [(200, None)] + [(409, "probe_busy")] * 4
        per_test = udp_sockets() - before
        assert per_test >= 1 and len(probes) == 1

        # a hundred sessions at once (the first session's test still runs)
        replies = await asyncio.gather(*(post_offer(http, server.url, t, sdp) for t in many))
        answered = [r for r in replies if r[0] == 200]
        assert len(answered) == LIMIT - 1
        assert {r for r in replies if r[0] != 200} == {(503, "server_busy")}
        assert len(probes) == LIMIT
        assert udp_sockets() - before <= LIMIT * per_test

    # each test ends at its timeout (nobody answered): its place and sockets are freed
    assert await wait_for(lambda: len(probes) == 0, 15)
    assert await wait_for(lambda: udp_sockets() <= before, 5), udp_sockets() - before
    # the failed result was kept, and the session may test again
    session_id = await _session(server, one)
    failed = (await server.services.repo.results(session_id))["connectivity"]
    assert failed["passed"] is False and failed["problems"] == ["no_connection"]
    async with aiohttp.ClientSession() as http:
        assert await post_offer(http, server.url, one, sdp) == (200, None)


async def _session(server: Server, token: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/api/onboarding", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return str((await response.json())["session_id"])
