"""After calls end and everybody leaves, nothing of them stays in the server's memory:
no peer connection, forwarded track, tap, relayed track or live session."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiortc import RTCPeerConnection

from videoid.call_center import LiveSession
from videoid.media import EncodedTap, ForwardedTrack, ParticipantPeer, RelayedTrack

from .conftest import StartServer
from .test_call_end_to_end import run_call

KINDS = (ParticipantPeer, ForwardedTrack, RelayedTrack, EncodedTap, LiveSession, RTCPeerConnection)


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
