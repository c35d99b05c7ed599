"""R22: logins counted in the database before any hashing, per username and per client
address, on SQLite and PostgreSQL: parallel guesses evaluate at most the allowance, an
unknown username answers like a known one, a flood from one address is refused before
it is hashed while an operator elsewhere logs in, and no typed username is audited."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from videoid.config import OperatorsConfig
from videoid.operator_console.accounts import client_key, delays

from .conftest import PASSWORD, Server, StartServer


async def attempt(
    http: aiohttp.ClientSession, server: Server, username: str, password: str
) -> tuple[int, str]:
    async with http.post(
        f"{server.url}/api/operator/login", json={"username": username, "password": password}
    ) as r:
        body: dict[str, Any] = await r.json()
        return r.status, body["error"]["code"] if "error" in body else "ok"


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_parallel_guesses_evaluate_at_most_the_allowance(
    database_url: str,
    start_server: StartServer,
) -> None:
    """R22: 39 wrong passwords and the right one at once: at most ``max_failed_logins``
    are hashed and answered, the rest wait; the right password is refused meanwhile."""
    server = await start_server(
        database_url=database_url,
        operators={"max_failed_logins": 3, "login_delay_seconds": 600},
    )
    await server.operator("olga")
    hashing = server.services.accounts.hashing
    before = hashing.hashes
    passwords = [f"wrong password {i}" for i in range(39)] + [PASSWORD]
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(attempt(http, server, "olga", p) for p in passwords))
        evaluated = [a for a in answers if a[1] != "login_throttled"]
        assert 1 <= len(evaluated) <= 3, answers
        assert set(evaluated) <= {(401, "invalid_credentials"), (200, "ok")}
        assert answers.count((429, "login_throttled")) == 40 - len(evaluated)
        assert hashing.hashes - before == len(evaluated)
        # the right password, while the wait lasts
        assert await attempt(http, server, "olga", PASSWORD) == (429, "login_throttled")
    assert hashing.hashes - before == len(evaluated)


async def test_unknown_and_throttled_usernames_answer_alike(start_server: StartServer) -> None:
    """R22: an existing username and an unknown one go through the same answers; no
    ``account_locked`` tells which exists, and the right password waits like any."""
    server = await start_server(operators={"max_failed_logins": 2, "login_delay_seconds": 600})
    await server.operator("olga")
    async with aiohttp.ClientSession() as http:
        seen = {}
        for username in ("olga", "nobody"):
            seen[username] = [
                await attempt(http, server, username, "wrong password") for _ in range(3)
            ]
        assert (
            seen["olga"]
            == seen["nobody"]
            == [
                (401, "invalid_credentials"),
                (401, "invalid_credentials"),
                (429, "login_throttled"),
            ]
        )
        assert await attempt(http, server, "olga", PASSWORD) == (429, "login_throttled")
        # another username from the same address is not held up by these
        await server.operator("pia")
        assert await attempt(http, server, "pia", PASSWORD) == (200, "ok")


async def test_a_flood_from_one_address_is_refused_before_hashing(
    start_server: StartServer,
) -> None:
    """R22: 100 logins for unknown usernames from one address: at most the address's
    allowance is hashed; an operator at another address then logs in with one hash, and
    the audit log holds none of the typed usernames."""
    server = await start_server(operators={"address_failed_logins": 5})
    await server.operator("olga")
    hashing = server.services.accounts.hashing
    before = hashing.hashes
    async with from_address("127.0.0.1") as attacker:
        answers = await asyncio.gather(
            *(attempt(attacker, server, f"ghost{i}", "some password") for i in range(100))
        )
    evaluated = [a for a in answers if a != (429, "login_throttled")]
    assert 1 <= len(evaluated) <= 5 and set(evaluated) <= {(401, "invalid_credentials")}, answers
    assert hashing.hashes - before == len(evaluated)
    flood = hashing.hashes
    async with from_address("127.0.0.2") as operator:
        assert await attempt(operator, server, "olga", PASSWORD) == (200, "ok")
    assert hashing.hashes - flood == 1  # not queued behind a hundred hashes
    repo = server.services.repo
    text = str(await repo.audit_entries()) + str(await repo.audit_details())
    assert "login_failed" in text and "ghost" not in text


def test_the_waits_double_up_to_the_longest() -> None:
    config = OperatorsConfig(login_delay_seconds=30, lockout_minutes=5)
    assert delays(config) == (30, 60, 120, 240, 300)


def test_an_ipv6_client_counts_by_its_network() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == client_key("not an address") == "unknown"
