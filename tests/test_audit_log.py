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
from videoid.recordings.audit_chain import entry_hash, verify

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
    assert details[viewed.seq][1]["what"] == "call" and viewed.subject == session_id
    assert len(details[viewed.seq][1]["request_id"]) == 16  # the access log's line (R14.7)
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
    head = out.strip().split("head ")[1].split(";")[0]
    last = int(head.split(":")[0])

    def copy_with(name: str, *sql: str) -> Path:
        """The database as it is, changed by ``sql``, in a data directory of its own."""
        target = tmp_path / name
        shutil.copytree(data_dir, target)  # the keys and the token's configuration too
        with sqlite3.connect(target / "videoid.db") as db:
            for statement in sql:
                db.executescript(statement)
        return target

    # details deleted with no purge to cover them: found (a purge's erasure passes:
    # test_retention)
    code, out = await cli_verify(
        copy_with("erased", "DELETE FROM audit_details WHERE seq = 3"), "--checkpoint", head
    )
    assert code == 1 and "details of entry 3 were deleted" in out, out

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


def rewrite_chain(db_path: Path, seq: int, actor: str) -> None:
    """What someone who can write the database would do: change entry ``seq``, then
    recompute every hash after it so that the chain alone verifies."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT id, seq, at, action, actor, subject, commitment FROM audit_log ORDER BY id"
        ).fetchall()
        previous = b"\x00" * 32
        for row_id, s, at, action, old_actor, subject, commit in rows:
            if s == seq:
                old_actor = actor
            digest = entry_hash(previous, s, at, action, old_actor, subject, commit)
            db.execute("UPDATE audit_log SET actor = ?, hash = ? WHERE id = ?",
                       (old_actor, digest, row_id))  # fmt: skip
            previous = bytes.fromhex(digest)


async def test_an_edit_with_the_chain_recomputed_is_caught_by_the_anchors(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    """The chain is unkeyed: anchors (the head signed in the token and timestamped, at
    every seal and periodically) are what catch a rewrite."""
    server = await start_server()
    session_id = await a_call(server, customer_video, operator_video)
    services = server.services
    await services.evidence.settle()  # the decision's seal, which anchors the log
    anchors = await services.repo.anchors()
    assert anchors and anchors[-1].timestamp is not None
    first = anchors[-1].seq
    # more entries after the anchor, then a periodic anchor over them
    await services.repo.append_audit(services.clock.now(), "evidence_viewed", "system",
                                     session_id, {"what": "test"})  # fmt: skip
    from videoid.recordings.audit_anchors import AuditAnchors

    assert isinstance(services.anchors, AuditAnchors)
    second = await services.anchors.anchor(services.clock.now(), "periodic")
    assert second is not None and second.seq > first
    assert await services.anchors.anchor(services.clock.now(), "periodic") is None  # no growth
    # the anchors are chained: one removed from the middle breaks the next; the newest
    # removed leaves entries no anchor covers, which fail once older than the interval
    from videoid.recordings.audit_anchors import check_anchors

    entries, found = await services.repo.audit_entries(), await services.repo.anchors()
    key = await services.anchors.existing_public_key()
    assert check_anchors(entries, found, key).ok
    broken = check_anchors(entries, found[1:], key)
    assert not broken.ok and "an anchor before it was removed" in (broken.problem or "")
    later = entries[-1].at + 3 * 3600
    assert check_anchors(entries, found, key, now=later, max_unanchored_seconds=7500).ok
    cut = check_anchors(entries, found[:-1], key, now=later, max_unanchored_seconds=7500)
    assert not cut.ok and "no anchor covers them" in (cut.problem or ""), cut
    data_dir = Path(services.config.server.data_dir)
    await server.stop()

    code, out = await cli_verify(data_dir)
    assert code == 0 and "audit log verified" in out and "2 anchors" in out, out

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(data_dir, target)
        return target

    # an entry before the first anchor changed, the chain recomputed: the chain alone
    # passes, the anchors do not, and say after which entry the log no longer matches
    edited = copy("rewritten")
    rewrite_chain(edited / "videoid.db", 3, "operator:99")
    with sqlite3.connect(edited / "videoid.db") as db:
        entries = [r for r in db.execute("SELECT seq FROM audit_log")]
    assert entries
    code, out = await cli_verify(edited)
    assert code == 1 and "does NOT match its anchors" in out, out
    assert "up to the first entry" in out and f"entry {first}" in out, out
    # and the server never signs over the rewrite: no new anchor launders it
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", "audit", "anchor", "--data-dir", str(edited),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    assert proc.returncode != 0 and "audit_log_changed" in out, out

    # changed after the first anchor: the log is still as anchored up to it
    later = copy("later")
    rewrite_chain(later / "videoid.db", second.seq, "operator:98")
    code, out = await cli_verify(later)
    assert code == 1 and f"as anchored up to entry {first}" in out, out

    # a forged anchor (the head moved to match the rewrite) fails its signature
    forged = copy("forged")
    rewrite_chain(forged / "videoid.db", 3, "operator:99")
    with sqlite3.connect(forged / "videoid.db") as db:
        for seq, digest in db.execute("SELECT seq, hash FROM audit_log").fetchall():
            db.execute("UPDATE audit_anchors SET hash = ? WHERE seq = ?", (digest, seq))
    code, out = await cli_verify(forged)
    assert code == 1 and "signature does not verify: forged" in out, out
