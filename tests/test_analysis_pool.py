"""The analysis pool's bounds (issue 14, item 4): photos wait in turn across sessions,
a full pool answers ``server_busy`` (503, Retry-After) without costing an attempt, and
an upload is spooled to disk, refused once past the cap, never gathered in memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from videoid.analysis_pool import AnalysisPool
from videoid.bots.onboarding_client import OnboardingClient, OnboardingError
from videoid.customer_client.invitations import Invitation
from videoid.customer_client.upload_spool import SpooledUpload
from videoid.errors import ServerBusy, ValidationError
from videoid.fair_queue import FairQueue, QueueFull

from .conftest import PHOTOS, Server, StartServer

# -- the scheduler, pure ---------------------------------------------------------------------


def test_the_queue_serves_owners_in_turn() -> None:
    queue: FairQueue[str] = FairQueue(limit=16)
    for i in range(12):  # one customer sends twelve photos at once
        queue.push("flood", f"flood-{i}")
    queue.push("other", "other-0")  # then another customer sends one
    queue.push("third", "third-0")
    order = []
    while (popped := queue.pop()) is not None:
        order.append(popped[1])
    # the others wait for one of the flood's photos, not for twelve
    assert order[:4] == ["flood-0", "other-0", "third-0", "flood-1"]
    assert order[4:] == [f"flood-{i}" for i in range(2, 12)]


def test_the_queue_is_bounded_and_forgets_a_job_taken_out() -> None:
    queue: FairQueue[int] = FairQueue(limit=2)
    queue.push("a", 1)
    queue.push("b", 2)
    with pytest.raises(QueueFull):
        queue.push("c", 3)
    assert queue.remove("a", 1) and not queue.remove("a", 1)
    queue.push("c", 3)
    assert [queue.pop(), queue.pop(), queue.pop()] == [("b", 2), ("c", 3), None]
    assert len(queue) == 0


async def test_the_pool_starts_waiting_photos_in_turn_across_sessions() -> None:
    """The pool's places and turns (no worker process needed: each job holds its worker
    for a moment of the event loop, as an analysis holds it for its seconds)."""
    pool = AnalysisPool(workers=1, queue=16)
    started: list[str] = []
    release = asyncio.Event()

    async def job(owner: str, name: str) -> None:
        async with pool.admit(owner) as place, place.wait():
            started.append(name)
            await release.wait()

    tasks = [asyncio.create_task(job("flood", f"flood-{i}")) for i in range(12)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("other", "other-0")))
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == ["flood-0"]  # one worker: one job at a time
    release.set()
    await asyncio.gather(*tasks)
    assert started[:3] == ["flood-0", "flood-1", "other-0"], started
    # a job given up while waiting gives its place back
    pool2 = AnalysisPool(workers=1, queue=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with pool2.admit("a") as place, place.wait():
            await hold.wait()

    first = asyncio.create_task(holder())
    second = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    with pytest.raises(ServerBusy) as busy:
        async with pool2.admit("b"):
            pass
    assert busy.value.retry_after_seconds >= 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    async with pool2.admit("b"):  # the cancelled one's place is free again
        pass
    hold.set()
    await first


# -- through the server ----------------------------------------------------------------------


async def consented(
    start_server: StartServer, database_url: str, **onboarding: object
) -> tuple[Server, Invitation, OnboardingClient]:
    server = await start_server(
        database_url,
        onboarding={"required_steps": ("consented", "selfie_taken"), **onboarding},
    )
    invitation = await server.invite()
    client = OnboardingClient(server.url, invitation.token)
    await client.consent("en")
    return server, invitation, client


async def test_a_full_pool_answers_server_busy_and_costs_no_attempt(
    start_server: StartServer, database_url: str
) -> None:
    server, invitation, client = await consented(
        start_server, database_url, analysis_workers=1, analysis_queue=0
    )
    selfie = (PHOTOS / "obama3.jpg").read_bytes()
    pool = server.services.pool
    try:
        # another session's photo holds the only worker, and there is no room to wait
        async with pool.admit("another-session") as place, place.wait():
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    f"{server.url}/api/onboarding/selfie",
                    data=selfie,
                    headers={"Authorization": f"Bearer {invitation.token}"},
                )
                assert response.status == 503
                assert int(response.headers["Retry-After"]) >= 1
                assert (await response.json())["error"]["code"] == "server_busy"
        assert (await client.overview())["attempts_left"]["selfie"] == 5  # none spent
        # with the worker free again, the photo goes through and takes its attempt
        assert await client.selfie(selfie) == {"accepted": True}
        assert (await client.overview())["attempts_left"]["selfie"] == 4
    finally:
        await client.close()


async def test_an_oversize_upload_is_refused_without_being_held_in_memory(
    start_server: StartServer,
) -> None:
    limit = 8_000_000
    server, invitation, client = await consented(start_server, "", max_upload_bytes=limit)
    chunk = bytes(65536)

    async def body() -> AsyncIterator[bytes]:  # 24 MB, chunked: no length announced
        for _ in range(384):
            yield chunk

    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as http:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            try:
                response = await http.post(
                    f"{server.url}/api/onboarding/selfie",
                    data=body(),
                    headers={"Authorization": f"Bearer {invitation.token}"},
                )
                status, answer = response.status, await response.json()
            except aiohttp.ClientError:  # the server may close before all is sent
                status, answer = 0, {}
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if status:
        assert status == 400 and answer["error"]["code"] == "file_too_large"
    # the old handler gathered the body in memory up to the cap (8 MB) before refusing;
    # now a few chunks in flight (and the server's other work) are all it holds
    assert peak - before < limit // 4, peak - before
    # the refused upload cost no attempt and left no file behind
    assert (await client.overview())["attempts_left"]["selfie"] == 5
    uploads = server.services.config.data_path / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    with pytest.raises(OnboardingError) as err:  # an announced length: refused at once
        await client._call("POST", "/api/onboarding/selfie", data=bytes(limit + 1), accept_422=True)
    assert err.value.code == "file_too_large"
    await client.close()


async def test_a_spooled_upload_is_not_in_clear_on_disk(tmp_path: Path) -> None:
    photo = (PHOTOS / "obama3.jpg").read_bytes()
    reader = aiohttp.StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())
    reader.feed_data(photo)
    reader.feed_eof()
    upload = await SpooledUpload.receive(reader, len(photo), tmp_path)
    try:
        assert list(tmp_path.iterdir()) == []  # no name to be found by
        raw = upload._file
        raw.seek(0)
        on_disk = raw.read()
        assert len(on_disk) == len(photo) and on_disk != photo
        assert photo[:64] not in on_disk
        assert await upload.read() == photo
    finally:
        upload.close()
    reader = aiohttp.StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())
    reader.feed_data(photo)
    reader.feed_eof()
    with pytest.raises(ValidationError) as err:
        await SpooledUpload.receive(reader, len(photo) - 1, tmp_path)
    assert err.value.code == "file_too_large"


class _Protocol:
    """What aiohttp's StreamReader asks of its protocol (flow control), nothing more."""

    _reading_paused = False

    def pause_reading(self) -> None: ...

    def resume_reading(self, resume_parser: bool = True) -> None: ...
