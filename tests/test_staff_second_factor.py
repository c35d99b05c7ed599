"""R22: staff log in with a second factor (TOTP, RFC 6238, with recovery codes); a code
is accepted once, also against parallel requests; wrong codes are throttled; accounts
are managed by supervisors (disable drops the live sockets); an unused login ends; a
decision needs a recent second-factor proof."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from videoid.bots.operator_bot import (
    AUTHENTICATOR,
    login,
    login_answer,
)
from videoid.bots.signaling_client import SignalingClient
from videoid.db.staff_factors import StaffFactors
from videoid.operator_console import totp

from .conftest import PASSWORD, Server, StartServer
from .test_call_end_to_end import run_call


async def post(
    url: str, body: dict[str, Any], token: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


async def challenge(server: Server, username: str) -> dict[str, Any]:
    status, body = await post(
        f"{server.url}/api/operator/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, body
    return body


async def second_factor(server: Server, passed: dict[str, Any], code: str) -> tuple[int, str]:
    status, body = await post(
        f"{server.url}/api/operator/login/second-factor",
        {"challenge": passed["challenge"], "code": code},
    )
    return status, body["error"]["code"] if "error" in body else "ok"


def test_totp_matches_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1, the last six of its eight digits
    secret = b"12345678901234567890"
    for now, code in ((59, "287082"), (1111111109, "081804"), (1234567890, "005924")):
        assert totp.code_at(secret, totp.step_at(now)) == code
        assert totp.matching_step(secret, code, now) == totp.step_at(now)
    assert totp.matching_step(secret, "287082", 59 + 3 * 30) is None  # out of the window


async def test_enrolment_then_code_and_the_secret_is_not_in_clear(
    database_url: str, start_server: StartServer
) -> None:
    server = await start_server(database_url)
    await server.operator("olga")
    passed = await challenge(server, "olga")
    assert passed["second_factor"] == "enrol" and "token" not in passed
    assert passed["otpauth_uri"].startswith("otpauth://totp/videoid:olga?secret=")
    assert passed["qr"].startswith("data:image/svg+xml;base64,")
    secret = totp.secret_from_text(passed["secret"])
    step = totp.step_at(time.time())
    outside = totp.code_at(secret, step + 5)  # outside the window
    if outside not in {totp.code_at(secret, s) for s in range(step - 1, step + 2)}:
        assert await second_factor(server, passed, outside) == (401, "invalid_code")
    status, body = await post(
        f"{server.url}/api/operator/login/second-factor",
        {"challenge": passed["challenge"], "code": totp.code_at(secret, step)},
    )
    assert status == 200 and len(body["recovery_codes"]) == 10 and body["token"]
    stored = await server.services.accounts.factors.secret(body["operator"]["id"])
    assert stored is not None and secret not in stored and passed["secret"].encode() not in stored
    # the challenge was used: a second try with it is refused
    assert await second_factor(server, passed, totp.code_at(secret, step + 1)) == (
        401,
        "challenge_expired",
    )
    # the next login asks for a code, not an enrolment
    assert (await challenge(server, "olga"))["second_factor"] == "totp"


async def test_fifty_parallel_logins_with_one_code_one_succeeds(
    database_url: str, start_server: StartServer
) -> None:
    server = await start_server(
        database_url, operators={"max_failed_logins": 200, "address_failed_logins": 400}
    )
    await server.operator("olga")
    await login(server.url, "olga", PASSWORD)  # enrolled
    passes = [await challenge(server, "olga") for _ in range(50)]
    code = await AUTHENTICATOR.code(server.url, "olga")
    results = await asyncio.gather(*(second_factor(server, p, code) for p in passes))
    assert sorted(results).count((200, "ok")) == 1, results
    # the others: the code's step used already, or (a parallel request's clock read a
    # little earlier than the one before it in the database) not evaluated yet
    assert set(results) <= {(200, "ok"), (401, "invalid_code"), (429, "login_throttled")}
    assert results.count((401, "invalid_code")) >= 10, results
    # replayed later with a fresh challenge: refused
    assert await second_factor(server, await challenge(server, "olga"), code) == (
        401,
        "invalid_code",
    )


async def test_a_recovery_code_works_once(database_url: str, start_server: StartServer) -> None:
    server = await start_server(database_url)
    await server.operator("olga")
    codes = (await login_answer(server.url, "olga", PASSWORD))["recovery_codes"]
    assert await second_factor(server, await challenge(server, "olga"), codes[3]) == (200, "ok")
    assert await second_factor(server, await challenge(server, "olga"), codes[3]) == (
        401,
        "invalid_code",
    )
    assert await second_factor(server, await challenge(server, "olga"), codes[4].upper()) == (
        200,
        "ok",
    )


async def test_wrong_codes_are_throttled(start_server: StartServer) -> None:
    server = await start_server(operators={"max_failed_logins": 2, "login_delay_seconds": 600})
    await server.operator("olga")
    await login(server.url, "olga", PASSWORD)
    passed = await challenge(server, "olga")
    right = await AUTHENTICATOR.code(server.url, "olga")
    wrong = "123456" if right != "123456" else "654321"
    assert await second_factor(server, passed, wrong) == (401, "invalid_code")
    assert await second_factor(server, passed, "not-a-recovery-code") == (401, "invalid_code")
    # now even the right code waits: it is not evaluated
    assert await second_factor(server, passed, right) == (429, "login_throttled")


async def test_disabled_account_cannot_log_in_and_its_socket_is_dropped(
    database_url: str, start_server: StartServer
) -> None:
    server = await start_server(database_url)
    sam_id = await server.operator("sam", role="supervisor")
    olga_id = await server.operator("olga")
    sam = await login(server.url, "sam", PASSWORD)
    client = SignalingClient(server.url, "/operator")
    await client.connect({"token": await login(server.url, "olga", PASSWORD)})
    try:
        await client.next("hello", 10)
        base = f"{server.url}/api/staff/accounts"
        status, body = await post(f"{base}/{sam_id}/disable", {}, sam)
        assert (status, body["error"]["code"]) == (403, "own_account")
        status, body = await post(f"{base}/{olga_id}/disable", {}, sam)
        assert status == 200, body
        for _ in range(50):
            if not client.sio.connected:
                break
            await asyncio.sleep(0.1)
        assert not client.sio.connected
    finally:
        await client.close()
    status, body = await post(
        f"{server.url}/api/operator/login", {"username": "olga", "password": PASSWORD}
    )
    assert (status, body["error"]["code"]) == (403, "account_disabled")
    async with aiohttp.ClientSession() as http:
        async with http.get(base, headers={"Authorization": f"Bearer {sam}"}) as r:
            listed = {a["username"]: a for a in (await r.json())["accounts"]}
    assert listed["olga"]["disabled"] and listed["olga"]["logins"] == 0
    assert listed["sam"]["enrolled"] and listed["sam"]["recovery_codes_left"] == 10
    assert listed["sam"]["own"] and not listed["olga"]["own"]
    audit = [e["action"] for e in await server.services.repo.audit_of(f"operator:{olga_id}")]
    assert "account_disable" in audit
    assert (await post(f"{base}/{olga_id}/enable", {}, sam))[0] == 200
    await login(server.url, "olga", PASSWORD)


async def test_an_unused_login_ends(start_server: StartServer) -> None:
    server = await start_server(operators={"idle_minutes": 1.5 / 60})
    await server.operator("olga")
    token = await login(server.url, "olga", PASSWORD)
    me = f"{server.url}/api/operator/me"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(3):  # in use: it lasts
            await asyncio.sleep(0.8)
            async with http.get(me) as r:
                assert r.status == 200
        await asyncio.sleep(2.0)
        async with http.get(me) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (401, "login_expired")
        async with http.get(me) as r:
            assert r.status == 401
    # a console's own refreshes (the dashboard's) are no use: it ends all the same
    await server.operator("sam", role="supervisor")
    token = await login(server.url, "sam", PASSWORD)
    headers = {"Authorization": f"Bearer {token}", "X-Background-Request": "1"}
    async with aiohttp.ClientSession(headers=headers) as http:
        statuses = []
        for _ in range(8):
            await asyncio.sleep(0.4)
            async with http.get(f"{server.url}/api/dashboard") as r:
                statuses.append((r.status, (await r.json()).get("error", {}).get("code")))
    assert statuses[0] == (200, None) and (401, "login_expired") in statuses, statuses


async def test_a_decision_after_the_reauthentication_window_needs_a_code(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    # the proof of the login's code is older than a second when the bot decides: the
    # server answers reauthentication_required, the bot gives a code and decides again
    server = await start_server(live={"workers": 0}, operators={"reauth_minutes": 1 / 60})
    invitation, result, _ = await run_call(server, customer_video, operator_video)
    assert result.outcome == "approved"
    repo = server.services.repo
    decided = next(at for _, to, at, _ in await repo.transitions(invitation.session_id)
                   if to == "approved")  # fmt: skip
    proofs = [e for e in await repo.audit_of("") if e["action"] == "reauthenticated"]
    assert len(proofs) == 1 and proofs[0]["at"] <= decided


async def test_an_open_console_left_unused_is_told_and_dropped(start_server: StartServer) -> None:
    server = await start_server(operators={"idle_minutes": 1.5 / 60})
    await server.operator("olga")
    token = await login(server.url, "olga", PASSWORD)
    client = SignalingClient(server.url, "/operator")
    await client.connect({"token": token})
    try:
        await client.next("hello", 10)
        await client.request("set_presence", {"status": "available"})  # in use
        ended = await client.next("login_ended", 10)  # within the 5 s check after 1.5 s
        assert ended == {"reason": "login_expired"}
        for _ in range(50):
            if not client.sio.connected:
                break
            await asyncio.sleep(0.1)
        assert not client.sio.connected
        assert server.services.center.snapshot()["operators"]["available"] == 0
    finally:
        await client.close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/operator/me", headers={"Authorization": f"Bearer {token}"}
        ) as r,
    ):
        assert r.status == 401


async def test_migration_keeps_accounts_ends_logins_and_keeps_what_refers_to_them(
    tmp_path: Path,
) -> None:
    """Migration 0016 on a database of 0014: the lockout's columns go without copying the
    operators' table (sessions refer to it), the logins made with a password alone end
    (nobody keeps working without the second factor), and it goes back down."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from videoid.db import Repository
    from videoid.db.repository import MIGRATIONS

    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as db:
        db.exec_driver_sql("PRAGMA foreign_keys=ON")
        cfg.attributes["connection"] = db
        command.upgrade(cfg, "0014")
        db.exec_driver_sql(
            "INSERT INTO operators (id, username, password_hash, role, created_at,"
            " failed_logins, locked_until) VALUES (7, 'olga', 'h', 'operator', 1.0, 2, 5.0)"
        )
        db.exec_driver_sql("INSERT INTO operator_logins VALUES ('" + "t" * 64 + "', 7, 3.0, 9e9)")
        db.exec_driver_sql(
            "INSERT INTO customers (id, email, phone, created_at) VALUES (1, '', '', 1.0)"
        )
        db.exec_driver_sql(
            "INSERT INTO identification_sessions (id, customer_id, state, ready_state,"
            " invite_token_hash, invite_expires_at, operator_id, created_at, updated_at)"
            " VALUES ('s', 1, 'approved', 'created', 'x', 2.0, 7, 1.0, 1.0)"
        )
    engine.dispose()
    repo = await Repository.open(f"sqlite+aiosqlite:///{path}")
    try:
        found = await repo.find_operator(id=7)
        assert found is not None and (found.disabled, found.enrolled) == (False, False)
        session = await repo.find_session(id="s")
        assert session is not None and session.operator_id == 7
        assert await StaffFactors(repo.engine).login_state("t" * 64) is None
    finally:
        await repo.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as db:
        cfg.attributes["connection"] = db
        command.downgrade(cfg, "0014")
        assert db.exec_driver_sql("SELECT count(*) FROM operators").scalar() == 1
    engine.dispose()


async def test_an_account_disabled_elsewhere_loses_its_console_even_in_a_call(
    server: Server,
) -> None:
    """Disabled from the command line (another process: the database only), an operator
    in a call is disconnected within the idle check's period, and the call ends for the
    customer; nothing waits for the operator's next event."""
    from .test_queue_flow import in_call

    cust, ann, _session_id, _ = await in_call(server)
    async with server.services.repo.engine.begin() as db:
        await db.execute(sa.text("UPDATE operators SET disabled = true WHERE username = 'ann'"))
    ended = await ann.next("login_ended", 15)
    assert ended["reason"] == "revoked"
    assert (await cust.next("call_ended", 10))["reason"] == "operator_left"
    assert server.services.center.operator_session(1) is None
    await asyncio.gather(cust.close(), ann.close())
