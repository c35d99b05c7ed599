"""The audit log in the database: what the system records (logins, accounts, the
session's transitions, the random draw, decisions, evidence views), no personal data in
the chain itself, and `videoid audit verify` finding changes made in the database."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
from pathlib import Path

import aiohttp

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.recordings.audit_chain import verify

from .conftest import PASSWORD, ROOT, Server, StartServer


async def cli_verify(data_dir: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", "audit", "verify", "--data-dir", str(data_dir), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def a_call(server: Server, customer_video: Path, operator_video: Path) -> str:
    await server.operator("olga")
    invitation = await server.invite()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/api/operator/login", json={"username": "olga", "password": "wrong!!"}
        ) as r:
            assert r.status == 401
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="rejected", watch_seconds=0.5
    )
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)
    async with aiohttp.ClientSession(cookies={"videoid_login": operator.token}) as http:
        async with http.get(f"{server.url}/api/sessions/{invitation.session_id}/call") as r:
            assert r.status == 200
    return invitation.session_id


async def test_what_is_recorded_and_that_it_verifies(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server()
    session_id = await a_call(server, customer_video, operator_video)
    repo = server.services.repo
    entries = await repo.audit_entries()
    actions = [e.action for e in entries]
    for action in ("account_created", "login_failed", "login", "assignment", "transition",
                   "decision", "evidence_viewed"):  # fmt: skip
        assert action in actions, action
    transitions = [e for e in entries if e.action == "transition" and e.subject == session_id]
    assert len(transitions) >= 4  # waiting, assigned, in_call, rejected
    details = await repo.audit_details()
    decision = next(e for e in entries if e.action == "decision")
    assert details[decision.seq][1] == {"outcome": "rejected", "reason_code": "document_invalid"}
    viewed = next(e for e in entries if e.action == "evidence_viewed")
    assert details[viewed.seq][1] == {"what": "call"} and viewed.subject == session_id
    # the chain holds ids and commitments, never a name
    assert not any("olga" in str(e) for e in entries)
    assert any("olga" in str(d) for d in details.values())
    assert verify(entries, details).ok


async def test_changes_in_the_database_are_found(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server = await start_server()
    await a_call(server, customer_video, operator_video)
    data_dir = Path(server.services.config.server.data_dir)
    await server.stop()

    code, out = await cli_verify(data_dir)
    assert code == 0 and "audit log verified" in out, out
    head = out.strip().split("head ")[1]
    last = int(head.split(":")[0])

    def copy_with(name: str, *sql: str) -> Path:
        """The database as it is, changed by ``sql``, in a data directory of its own."""
        target = tmp_path / name
        target.mkdir()
        shutil.copy(data_dir / "videoid.db", target / "videoid.db")
        with sqlite3.connect(target / "videoid.db") as db:
            for statement in sql:
                db.executescript(statement)
        return target

    # retention: the details of the first entries are erased; still valid
    code, out = await cli_verify(
        copy_with("erased", "DELETE FROM audit_details WHERE seq <= 3"), "--checkpoint", head
    )
    assert code == 0 and "3 with their details erased" in out, out

    cases = {
        "edited": ("UPDATE audit_log SET actor = 'operator:99' WHERE seq = 5", 5, "changed"),
        "deleted": ("DELETE FROM audit_log WHERE seq = 4", 4, "deleted"),
        "details": ("UPDATE audit_details SET details = '{\"why\": \"x\"}' WHERE seq = 3",
                    3, "details of entry 3"),
        "reordered": (
            "UPDATE audit_log SET seq = -6 WHERE seq = 6; "
            "UPDATE audit_log SET seq = 6 WHERE seq = 7; "
            "UPDATE audit_log SET seq = 7 WHERE seq = -6", 6, "",
        ),
        "inserted": (  # a forged entry after the last, copied from another
            "INSERT INTO audit_log (seq, at, action, actor, subject, commitment, hash) "
            f"SELECT {last + 1}, at, action, actor, subject, commitment, hash FROM audit_log "
            "WHERE seq = 3", last + 1, "",
        ),
        "cut": (f"DELETE FROM audit_log WHERE seq = {last}", last, "before the checkpoint"),
    }  # fmt: skip
    for name, (sql, seq, words) in cases.items():
        code, out = await cli_verify(copy_with(name, sql), "--checkpoint", head)
        assert code == 1 and f"BROKEN at entry {seq}" in out and words in out, (name, out)
