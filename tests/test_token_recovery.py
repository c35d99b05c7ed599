"""A crash during certificate issuance no longer wedges the token (issue 20, item 2):
one key label per attempt, an attempt's leftovers destroyed (and audited) at the next
start, a label held twice is a clear error that leaves the token usable, and every
token operation waits a bounded time for the token (``token_unavailable``, 503)."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest

from videoid.trust.ca import CaError

from .conftest import StartServer
from .test_ca_profile import TAX_CODE


async def _crl_status(url: str) -> tuple[int, dict[str, str] | bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/ca/issuing.crl", timeout=aiohttp.ClientTimeout(total=30)) as response,
    ):
        if response.content_type == "application/json":
            return response.status, (await response.json())["error"]
        return response.status, await response.read()


async def test_keys_left_by_a_crash_are_destroyed_at_start_and_the_retry_signs(
    start_server: StartServer, database_url: str
) -> None:
    server = await start_server(database_url)
    data_dir = server.services.config.data_path
    ca = await server.services.trust.ca()
    invitation = await server.invite()
    sid = invitation.session_id
    # what a process killed between the key and its certificate leaves in the token:
    # a key of this attempt's label, and one of the label every attempt used before
    leftovers = {f"customer-{sid}-0badc0de", f"customer-{sid}"}
    for label in leftovers:
        await asyncio.to_thread(ca.keys.generate, label)
    await server.stop()

    again = await start_server(database_url, server={"data_dir": str(data_dir)})
    trust = again.services.trust
    ca = await trust.ca()
    assert await asyncio.to_thread(ca.keys.labels, f"customer-{sid}") == set()
    audited = [
        e["details"]["label"]
        for e in await again.services.repo.audit_of(sid)
        if e["action"] == "orphan_key_destroyed"
    ]
    assert sorted(audited) == sorted(leftovers)
    # the retry gets a key of its own, which signs; the CRL answers
    record = await trust.issue(sid, TAX_CODE)
    assert record.key_label.startswith(f"customer-{sid}-") and record.key_label not in leftovers
    assert await asyncio.to_thread(ca.keys.labels, f"customer-{sid}") == {record.key_label}
    signature = await asyncio.to_thread(ca.keys.sign, record.key_label, b"contract")
    assert signature.startswith(b"0")  # DER: a SEQUENCE
    status, _ = await _crl_status(again.url)
    assert status == 200
    # a second start finds nothing more to destroy: the certified key stays
    assert await trust.reconcile_keys() == []


async def test_a_label_held_twice_is_a_clear_error_and_the_token_stays_usable(
    start_server: StartServer,
) -> None:
    server = await start_server()
    ca = await server.services.trust.ca()
    for _ in range(2):
        await asyncio.to_thread(ca.keys.generate, "customer-twice")
    with pytest.raises(CaError) as refused:
        await asyncio.to_thread(ca.keys.sign, "customer-twice", b"contract")
    assert refused.value.code == "key_ambiguous"
    # python-pkcs11 keeps the session's operation lock while a search is open: a search
    # abandoned after its second hit used to hang every later use of the token
    async with asyncio.timeout(20):
        status, body = await _crl_status(server.url)
    assert status == 200 and isinstance(body, bytes)


async def test_a_busy_token_answers_token_unavailable_instead_of_hanging(
    start_server: StartServer,
) -> None:
    server = await start_server(pkcs11={"timeout_seconds": 1.0})
    trust = server.services.trust
    await trust.ca()
    release = threading.Event()
    held = threading.Event()

    def hang(session: object) -> None:  # an operation stuck inside the token
        held.set()
        release.wait(30)

    stuck = asyncio.ensure_future(asyncio.to_thread(trust.token.run, hang))
    try:
        await asyncio.to_thread(held.wait, 10)
        async with asyncio.timeout(10):
            status, error = await _crl_status(server.url)
        assert status == 503, error
        assert isinstance(error, dict) and error["code"] == "token_unavailable"
        # and the health check says which part is failing
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/api/health") as response,
        ):
            health = await response.json()
        assert response.status == 503 and health["failing"] == ["token"], health
        assert health["checks"]["token"] == "busy"
    finally:
        release.set()
        await stuck
    status, _ = await _crl_status(server.url)
    assert status == 200
