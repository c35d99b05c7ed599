"""The command line against a real server process: first start prints an account and an
invitation; `videoid invite` and `videoid operator add` work; the two bots complete a call."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
from pathlib import Path

import aiohttp

from videoid.bench.documents import make_document, portrait_from, render
from videoid.bots.operator_bot import Authenticator, login, login_answer
from videoid.db import Repository
from videoid.db.personal_data import PersonalData

from .conftest import PHOTOS, ROOT, free_port


async def run(*args: str, stdin: str | None = None, timeout_seconds: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videoid",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin else None), timeout_seconds
    )
    return proc.returncode or 0, out.decode()


async def test_server_cli_and_bots_complete_a_call(
    tmp_path: Path, customer_video: Path, operator_video: Path
) -> None:
    port = free_port()
    data = tmp_path / "data"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "--port",
        str(port),
        "--data-dir",
        str(data),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        lines: list[str] = []
        while not any("new invitations" in line for line in lines):
            line = await asyncio.wait_for(server.stdout.readline(), 30)  # type: ignore[union-attr]
            assert line, "".join(lines)
            lines.append(line.decode())
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/operator" in text
        password = re.search(r"password: (\S+)", text).group(1)  # type: ignore[union-attr]
        first_link = re.search(r"a customer invitation: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert "/join#" in first_link

        code, out = await run(
            "invite",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--email",
            "eve@example.org",
            "--phone",
            "+39 347 123 4567",
        )
        assert code == 0, out
        link = out.strip().splitlines()[-1]
        assert link.startswith(f"http://127.0.0.1:{port}/join#")
        code, out = await run(
            "invite", "--data-dir", str(data), "--email", "bad", "--phone", "+391234567"
        )
        assert code == 2 and "invalid_email" in out

        add = (
            "operator",
            "add",
            "--data-dir",
            str(data),
            "--username",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        )
        code, out = await run(*add, stdin="a long enough password\n")
        assert code == 0 and "added operator olga" in out, out
        code, out = await run(*add, stdin="a long enough password\n")
        assert code == 2 and "username_taken" in out

        url = f"http://127.0.0.1:{port}"
        operator = asyncio.create_task(
            run(
                "bot",
                "operator",
                "--server",
                url,
                "--username",
                "admin",
                "--password-stdin",
                "--decision",
                "reject",
                "--watch-seconds",
                "1",
                "--timeout",
                "60",
                "--video",
                str(operator_video),
                "--totp-file",
                str(tmp_path / "totp"),
                stdin=password + "\n",
                timeout_seconds=90,
            )
        )
        await asyncio.sleep(1.5)
        customer = (
            "bot",
            "customer",
            "--invite",
            link,
            "--video",
            str(customer_video),
            "--sms-outbox",
            str(data / "outbox" / "sms.jsonl"),
        )
        # the product's default asks for every onboarding step: the bot needs something
        # to show
        code, out = await run(*customer)
        assert code == 2 and "give --document and --selfie" in out, out
        rng = random.Random(5)
        back, front_side = render(
            make_document(rng, "TD1"), portrait_from(PHOTOS / "obama.jpg"), rng
        )
        assert front_side is not None
        front_side.convert("RGB").save(tmp_path / "front.jpg")
        back.convert("RGB").save(tmp_path / "back.jpg")
        code, out = await run(
            *customer,
            "--document",
            str(tmp_path / "front.jpg"),
            "--document-back",
            str(tmp_path / "back.jpg"),
            "--selfie",
            str(PHOTOS / "obama3.jpg"),
            "--language",
            "it",
            "--timeout",
            "60",
            timeout_seconds=120,
        )
        assert code == 0, out
        for step in (
            "consent: accepted (privacy 2026-11, terms 2026-11)",
            "document front: accepted (id_card, UTO; no warnings)",
            "document back: accepted (id_card, UTO; no warnings)",
            "data: confirmed as read",
            "selfie: accepted",
            "connectivity: passed",
            "a/v test: passed",
        ):
            assert step in out, out
        assert "queued: position 1" in out and "outcome: rejected" in out
        frames = int(re.search(r"received (\d+) video", out).group(1))  # type: ignore[union-attr]
        assert frames > 0
        code, out = await operator
        assert code == 0 and ": rejected (received" in out, out

        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/health") as r:
            assert (await r.json())["status"] == "ok"

        # the bot kept the secret it enrolled: it logs in again with it
        token = await login(url, "admin", password, Authenticator(tmp_path / "totp"))
        assert (tmp_path / "totp").stat().st_mode & 0o077 == 0
        where = ("--data-dir", str(data))

        async def accounts() -> dict[str, dict[str, object]]:
            code, out = await run("operator", "list", "--json", *where)
            assert code == 0, out
            return {a["username"]: a for a in json.loads(out.strip().splitlines()[-1])}

        listed = await accounts()
        assert listed["admin"]["enrolled"] and listed["admin"]["logins"] == 2  # the bot's, ours
        assert not listed["olga"]["enrolled"] and not listed["olga"]["disabled"]
        for action in ("disable", "reset-password", "reset-2fa", "revoke-logins"):
            code, out = await run("operator", action, "--username", "admin", *where)
            assert code == 0 and f"{action}: admin done" in out, out
        listed = await accounts()
        assert listed["admin"]["disabled"] and not listed["admin"]["enrolled"]
        assert listed["admin"]["logins"] == 0
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/api/operator/me", headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            assert r.status == 401  # its login ended
        code, out = await run("operator", "enable", "--username", "admin", *where)
        assert code == 0, out
        code, out = await run("operator", "reset-password", "--username", "admin", *where)
        fresh = re.search(r"^password: (\S+)", out, re.M).group(1)  # type: ignore[union-attr]
        assert fresh != password
        # enrolled anew at the next login, with the new password
        assert (await login_answer(url, "admin", fresh, Authenticator()))["recovery_codes"]
        code, out = await run("operator", "disable", "--username", "nobody", *where)
        assert code != 0 and "account_not_found" in out, out
    finally:
        server.terminate()
        await server.wait()
    repo = await Repository.open(f"sqlite+aiosqlite:///{data / 'videoid.db'}")
    repo.protect(PersonalData.local(data / "keys"))  # the server's key files
    rejected = await repo.sessions_in(["rejected"])
    assert len(rejected) == 1
    [decision] = await repo.decisions(rejected[0].id)
    assert decision.outcome == "rejected" and decision.reason_code == "document_invalid"
    await repo.close()
