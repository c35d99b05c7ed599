"""The compliance officer's console over HTTP: search, view, play (signed links, ranges,
seeking), verify, export; every action in the audit log; nobody else gets in
(R13, R14, R22)."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import random
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from videoid.bench.search_bench import fill
from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot, login_answer
from videoid.compliance.search import FLAGS, OUTCOMES, Query, search
from videoid.db import Repository
from videoid.db.personal_data import PersonalData, name_words
from videoid.recordings.audit_chain import verify as verify_chain
from videoid.recordings.evidence import MANIFEST_KIND
from videoid.recordings.evidence_package import verify_package

from .conftest import PASSWORD, POSTGRES_URL, Server, StartServer
from .test_repository import _drop_schema, _postgres_schema

PERSON = {
    "surname": "Lovelace",
    "given_names": "Ada Augusta",
    "document_number": "CA12345BX",
    "date_of_birth": "1985-12-10",
    "nationality": "GBR",
}


async def recorded_call(
    server: Server, customer_video: Path, operator_video: Path, decision: str = "rejected"
) -> str:
    """A real call through the server, decided, recorded and sealed; the session's
    onboarding data put as onboarding stores it. Returns the session id."""
    services = server.services
    if await services.repo.find_operator(username="olga") is None:
        await server.operator("olga")
    invitation = await server.invite()
    await services.repo.put_result(
        invitation.session_id,
        "personal_data",
        {"fields": PERSON, "edited": ["document_number"]},
        services.clock.now(),
    )
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision=decision,
        watch_seconds=3.0, min_video_frames=5,
    )  # fmt: skip
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)
    for _ in range(100):  # sealed in the background after the decision
        objects = await services.repo.objects_of(invitation.session_id)
        if any(o.kind == MANIFEST_KIND for o in objects):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the session was not sealed")
    return invitation.session_id


async def login(http: aiohttp.ClientSession, server: Server, username: str) -> None:
    """Logs in with the session's cookie jar; its POSTs then carry the CSRF token."""
    await login_answer(server.url, username, PASSWORD, http=http)
    csrf = {c.key: c.value for c in http.cookie_jar}["videoid_csrf"]
    http.headers["X-CSRF-Token"] = csrf  # type: ignore[index]


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as r:
        return r.status, await r.json()


async def test_search_view_play_verify_export(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server(live={"workers": 0})
    services = server.services
    session_id = await recorded_call(server, customer_video, operator_video)
    officer_id = await server.operator("carla", role="compliance")
    base = f"{server.url}/api/compliance"

    async with aiohttp.ClientSession() as anonymous:
        status, body = await get(anonymous, f"{base}/sessions")
        assert status == 401, body
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:  # not operators
        await login(http, server, "olga")
        status, body = await get(http, f"{base}/sessions")
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await get(http, f"{base}/sessions/{session_id}")
        assert status == 403

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, server, "carla")

        async def find(**params: str) -> list[str]:
            status, body = await get(http, f"{base}/sessions", params=params)
            assert status == 200, body
            return [s["session_id"] for s in body["sessions"]]

        today = datetime.datetime.now(datetime.UTC).date().isoformat()
        assert await find() == [session_id]
        assert await find(name="ada lovelace") == [session_id]
        assert await find(name="LOVELACE") == [session_id]
        assert await find(name="Babbage") == []
        assert await find(document="ca 12345 bx") == [session_id]
        assert await find(document="CA12345BY") == []
        assert await find(outcome="rejected", operator="olga") == [session_id]
        assert await find(outcome="approved") == []
        assert await find(flag="data_edited") == [session_id]
        assert await find(flag="recording_interrupted") == []
        assert await find(**{"from": today, "to": today}) == [session_id]
        assert await find(**{"from": "2001-01-01", "to": "2001-12-31"}) == []
        for params, field in (
            ({"from": "yesterday"}, "from"),
            ({"from": today, "to": "2001-01-01"}, "to"),
            ({"outcome": "maybe"}, "outcome"),
            ({"name": "x" * 200}, "name"),
        ):
            status, body = await get(http, f"{base}/sessions", params=params)
            assert (status, body["error"]["code"], body["error"]["field"]) == (
                400, "invalid_search", field
            ), body  # fmt: skip
        status, body = await get(http, f"{base}/sessions", params={"operator": "nobody"})
        assert (status, body["error"]["code"]) == (400, "unknown_operator")
        status, found = await get(http, f"{base}/sessions")
        [row] = found["sessions"]
        assert row["customer"] == "Ada Augusta Lovelace" and row["operator"] == "olga"
        assert row["document"]["number"] == "••••••5BX"  # masked in the list
        assert row["state"] == "rejected" and row["recordings"] == ["complete"]

        status, view = await get(http, f"{base}/sessions/{session_id}")
        assert status == 200, view
        assert view["customer_data"]["document_number"] == "CA12345BX"
        kinds = {e["kind"] for e in view["timeline"]}
        assert {"transition", "assignment", "decision", "recording"} <= kinds, kinds
        assert view["seal"]["items"] >= 5
        [recording] = view["recordings"]
        assert recording["status"] == "complete" and not recording["destroyed"]
        status, body = await get(http, f"{base}/sessions/not-a-session")
        assert (status, body["error"]["code"]) == (404, "session_not_found")

        # playback: a signed link per side, ranges, a WebM a browser can seek in
        seconds = recording["summary"]["seconds"]
        for side in ("customer", "operator"):
            async with http.post(
                f"{base}/recordings/{recording['id']}/play", json={"side": side}
            ) as r:
                assert r.status == 200, await r.text()
                link = await r.json()
            async with aiohttp.ClientSession() as browser:  # the link alone is enough
                async with browser.get(server.url + link["url"]) as r:
                    assert r.status == 200 and r.headers["Accept-Ranges"] == "bytes"
                    assert r.content_type == "video/webm"
                    whole = await r.read()
                async with browser.get(
                    server.url + link["url"], headers={"Range": "bytes=100-299"}
                ) as r:
                    assert r.status == 206
                    assert r.headers["Content-Range"] == f"bytes 100-299/{len(whole)}"
                    assert await r.read() == whole[100:300]
                async with browser.get(
                    server.url + link["url"], headers={"Range": "bytes=-50"}
                ) as r:
                    assert r.status == 206 and await r.read() == whole[-50:]
                async with browser.get(
                    server.url + link["url"], headers={"Range": f"bytes={len(whole) + 5}-"}
                ) as r:
                    assert r.status == 416
            with av.open(io.BytesIO(whole)) as container:
                assert {s.type for s in container.streams} == {"video", "audio"}
                assert container.duration is not None
                assert abs(container.duration / 1e6 - seconds) < 1.5, (container.duration, seconds)
                video = container.streams.video[0]
                middle = seconds / 2
                container.seek(int(middle * 1e6))  # to the keyframe before, by the cues
                frame = next(f for f in container.decode(video) if f.time >= middle)
                assert frame.width == 640 and frame.time < middle + 0.5

        async with http.post(f"{base}/recordings/{recording['id']}/play", json={"side": "x"}) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (400, "invalid_payload")
        for unknown in ("0" * 32, "not-a-recording-id"):  # a clear 404, not a 500
            async with http.post(
                f"{base}/recordings/{unknown}/play", json={"side": "customer"}
            ) as r:
                assert (r.status, (await r.json())["error"]["code"]) == (404, "recording_not_found")
        url, _ = services.links.sign(recording["id"], "customer", f"operator:{officer_id}", 0.0)
        forged = {
            "expired": (url, "playback_link_expired"),
            "signature": (url[:-4] + "0000", "playback_link_invalid"),
            "side": (url.replace("customer.webm", "operator.webm"), "playback_link_invalid"),
            "someone else": (url.replace(f"by=operator:{officer_id}", "by=operator:1"),
                             "playback_link_invalid"),
        }  # fmt: skip
        for what, (bad, code) in forged.items():
            async with aiohttp.ClientSession() as browser:
                status, body = await get(browser, server.url + bad)
                assert (status, body["error"]["code"]) == (403, code), what

        # verify in one click: intact, then a byte flipped in the recording is named
        async with http.post(f"{base}/sessions/{session_id}/verify") as r:
            verdict = await r.json()
        assert verdict["ok"], verdict
        assert all(i["ok"] for i in verdict["items"]) and verdict["audit"]["ok"]
        path = services.config.data_path / "recordings"
        [file] = list(path.rglob("*.vrec"))
        original = file.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        file.write_bytes(bytes(flipped))
        async with http.post(f"{base}/sessions/{session_id}/verify") as r:
            verdict = await r.json()
        assert not verdict["ok"]
        bad = {i["name"]: i["problem"] for i in verdict["items"] if not i["ok"]}
        assert "does not verify" in bad[f"recordings/{recording['id']}.mkv"], verdict
        async with http.get(f"{base}/sessions/{session_id}/export") as r:  # refused, said why
            assert (r.status, (await r.json())["error"]["code"]) == (409, "evidence_changed")
        file.write_bytes(original)

        # export: a package the offline verifier accepts
        async with http.get(f"{base}/sessions/{session_id}/export") as r:
            assert r.status == 200 and r.content_type == "application/zip"
            assert session_id in r.headers["Content-Disposition"]
            package = await r.read()
        (server_dir := services.config.data_path / "out").mkdir()
        (server_dir / "p.zip").write_bytes(package)
        verdict_pkg = verify_package(server_dir / "p.zip", services.evidence.key.public_pem)
        assert verdict_pkg.ok and verdict_pkg.session_id == session_id, verdict_pkg.problems
        with zipfile.ZipFile(io.BytesIO(package)) as z:
            assert any(n.endswith(".mkv") for n in z.namelist())

    # every action of the officer is in the audit log, and the chain holds
    actor = f"operator:{officer_id}"
    entries = await services.repo.audit_entries()
    mine = [e.action for e in entries if e.actor == actor]
    for action in ("login", "evidence_searched", "evidence_viewed", "recording_played",
                   "evidence_verified", "evidence_export_refused",
                   "evidence_exported"):  # fmt: skip
        assert action in mine, (action, mine)
    details = await services.repo.audit_details()
    refused = [details[e.seq][1] for e in entries if e.action == "evidence_export_refused"]
    assert refused == [{"code": "evidence_changed"}]
    searched = [details[e.seq][1] for e in entries if e.action == "evidence_searched"]
    assert {"filters": ["document"], "results": 1, "total": 1} in searched  # never the number
    assert all("CA12345" not in str(d) for d in searched)
    assert verify_chain(entries, details).ok


@pytest.mark.browser
async def test_browser_compliance_console(
    start_server: StartServer, customer_video: Path, operator_video: Path, customer_y4m: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A compliance officer in a real browser: search, open, play both sides (frames
    play, seeking works, the operator's side follows), verify, export; each action
    lands in the audit log."""
    from .test_browser_call import chromium, console_login

    server = await start_server(live={"workers": 0})
    services = server.services
    session_id = await recorded_call(server, customer_video, operator_video)
    officer_id = await server.operator("carla", role="compliance")

    async with chromium(customer_y4m) as browser:
        ctx = await browser.new_context(
            viewport={"width": 1280, "height": 1000}, accept_downloads=True
        )
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{server.url}/compliance")
        await console_login(page, server.url, "carla")
        row = f"#results tr[data-session='{session_id}']"
        await page.wait_for_selector(row, timeout=10000)

        await page.fill("#q-document", "XX000")
        await page.click("#search")
        await page.wait_for_selector(row, state="detached", timeout=10000)
        assert "0 session" in (await page.text_content("#result-count") or "")
        await page.fill("#q-document", "")
        await page.fill("#q-name", "lovelace")
        await page.select_option("#q-outcome", "rejected")
        await page.click("#search")
        await page.wait_for_selector(row, timeout=10000)
        assert "Ada Augusta Lovelace" in (await page.text_content(row) or "")

        await page.click(f"{row} button.open")
        await page.wait_for_selector("#detail:visible")
        assert session_id in (await page.text_content("#d-id") or "")
        assert len(await page.query_selector_all("#d-timeline tbody tr")) >= 5
        assert "rejected by olga" in (await page.text_content("#d-decisions") or "")

        # play: frames decode in the <video>, then seek to the middle; the other side follows
        await page.wait_for_function(
            "() => { const v = document.getElementById('play-customer');"
            " return v.readyState >= 2 && isFinite(v.duration) && v.duration > 2; }",
            timeout=15000,
        )
        duration = await page.eval_on_selector("#play-customer", "v => v.duration")
        await page.eval_on_selector("#play-customer", "v => v.play()")
        await page.wait_for_function(
            "() => { const v = document.getElementById('play-customer');"
            " return v.getVideoPlaybackQuality().totalVideoFrames > 10 && v.currentTime > 0.5; }",
            timeout=15000,
        )
        await page.eval_on_selector("#play-customer", "v => v.pause()")
        target = round(duration / 2, 2)
        await page.eval_on_selector(
            "#play-customer",
            "(v, t) => new Promise(done => { v.addEventListener('seeked', done, {once: true});"
            " v.currentTime = t; })",
            target,
        )
        at = await page.eval_on_selector("#play-customer", "v => v.currentTime")
        assert abs(at - target) < 0.1, (at, target)
        await page.wait_for_function(
            "t => Math.abs(document.getElementById('play-operator').currentTime - t) < 0.2",
            arg=target,
            timeout=10000,
        )
        width = await page.eval_on_selector("#play-operator", "v => v.videoWidth")
        assert width == 640

        await page.click("#verify")
        await page.wait_for_selector("#verdict.ok", timeout=20000)
        assert "Verified" in (await page.text_content("#verdict") or "")

        # a refused export says why in the page (it used to do nothing visible)
        [file] = list((services.config.data_path / "recordings").rglob("*.vrec"))
        original = file.read_bytes()
        file.write_bytes(original[:-40] + bytes(40))
        await page.click("#export")
        await page.wait_for_selector("#verdict.bad", timeout=20000)
        refusal = await page.text_content("#verdict") or ""
        assert "Export refused" in refusal and "evidence_changed" in refusal, refusal
        file.write_bytes(original)

        async with page.expect_download() as info:
            await page.click("#export")
        download = await info.value
        package = tmp_path / "package.zip"
        await download.save_as(str(package))
        verdict = verify_package(package, services.evidence.key.public_pem)
        assert verdict.ok and verdict.session_id == session_id, verdict.problems

        # paging: 120 newer sessions, the count with the total, older and newer pages
        await fill(services.repo, 120, start=services.clock.now() + 1, rng=random.Random(3))
        await page.fill("#q-name", "")
        await page.select_option("#q-outcome", "")
        await page.click("#search")
        await page.wait_for_function(
            "() => document.getElementById('result-count').textContent.includes('of 121')"
        )

        async def showing(text: str) -> None:
            await page.wait_for_function(
                "t => document.getElementById('result-count').textContent.includes(t)",
                arg=text.replace("-", "\u2013"),  # an en dash between the numbers
            )

        await showing("1-50 of 121")
        await page.click("#page-older")
        await showing("51-100 of 121")
        await page.click("#page-older")
        await showing("101-121 of 121")
        await page.wait_for_selector(row, timeout=10000)  # the oldest, on the last page
        assert await page.is_disabled("#page-older")
        await page.click("#page-newer")
        await showing("51-100 of 121")
        assert await page.query_selector(row) is None

        await page.screenshot(path=str(tmp_path / "compliance.png"), full_page=True)
        assert errors == []
        await ctx.close()

    actor = f"operator:{officer_id}"
    mine = [e.action for e in await services.repo.audit_entries() if e.actor == actor]
    for action in ("login", "evidence_searched", "evidence_viewed", "recording_played",
                   "evidence_verified", "evidence_exported"):  # fmt: skip
        assert action in mine, (action, mine)
    assert mine.count("recording_played") == 2  # both sides, once each


# -- search that finds everything (issue 14) --------------------------------------------

NEWER = 2100
"""More sessions than the old search's window (2000), all newer than the one looked for."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def search_repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    if request.param == "sqlite":
        repo = await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
        repo.protect(PersonalData.local(tmp_path / "keys"))
        yield repo
        await repo.close()
        return
    schema = await _postgres_schema()
    if schema is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    repo = await Repository.open(POSTGRES_URL, schema=schema)
    repo.protect(PersonalData.local(tmp_path / "keys"))
    yield repo
    await repo.close()
    await _drop_schema(schema)


async def _find(repo: Repository, **params: str) -> dict[str, Any]:
    return await search(repo, Query.from_params(params))


async def _every_page(repo: Repository, **params: str) -> tuple[list[dict[str, Any]], int]:
    """Every session of a search, page after page by its cursor; and the totals seen."""
    seen: list[dict[str, Any]] = []
    totals = set()
    after = ""
    while True:
        page = await _find(repo, **params, **({"after": after} if after else {}))
        seen += page["sessions"]
        totals.add(page["total"])
        assert page["more"] == (page["next"] is not None)
        if page["next"] is None:
            break
        assert len(page["sessions"]) == page["page_size"]
        after = page["next"]
    [total] = totals
    return seen, total


async def test_search_finds_a_session_older_than_thousands(search_repo: Repository) -> None:
    """The first session, then 2100 newer ones: a search by name, document number and
    date still finds it, with exact totals; "%" and "_" are themselves; paging gives
    every match exactly once; flags, outcomes and operators agree with what each
    session's summary shows."""
    repo = search_repo
    day = datetime.datetime(2025, 3, 14, 9, 0, tzinfo=datetime.UTC).timestamp()
    old = await repo.create_session(
        email="ada@example.org",
        phone="+393471234567",
        token_hash="a" * 64,
        ready_state="created",
        now=day,
        expires_at=day + 3600,
    )
    await repo.put_result(old, "personal_data", {"fields": PERSON, "edited": []}, day)
    await repo.put_result(
        old, "document", {"mrz": {"document_number": "CA12345BX"}, "warnings": []}, day
    )
    rng = random.Random(14)
    filled = await fill(repo, NEWER, start=day + 86400, rng=rng)

    found = await _find(repo, name="Ada Lovelace")
    assert [s["session_id"] for s in found["sessions"]] == [old]
    assert (found["total"], found["more"], found["next"]) == (1, False, None)
    found = await _find(repo, document="ca 12345-bx")
    assert [s["session_id"] for s in found["sessions"]] == [old] and found["total"] == 1
    dated = {"from": "2025-03-14", "to": "2025-03-14"}
    found = await _find(repo, name="lovelace", **dated)
    assert [s["session_id"] for s in found["sessions"]] == [old] and found["total"] == 1
    found = await _find(repo, document="CA12345BX", **dated)
    assert [s["session_id"] for s in found["sessions"]] == [old] and found["total"] == 1
    assert (await _find(repo, **dated))["total"] == 1
    assert (await _find(repo, name="Babbage", **dated))["total"] == 0
    assert (await _find(repo, document="CA12345BY"))["total"] == 0

    # wildcards are characters like any other: no name has them
    for name in ("%", "_", "Love%", "Lovel_ce", "%lace", "\\", "Ada %"):
        found = await _find(repo, name=name)
        assert (found["total"], found["sessions"]) == (0, []), name

    # whole words only (blind indexes of words): a part of a name finds nothing
    assert (await _find(repo, name="Lovel"))["total"] == 0
    assert (await _find(repo, name="LOVELACE ada"))["total"] == 1

    # a common surname: every match once, newest first, exactly as many as the total
    surname = filled.people[0]["surname"]
    words = set(name_words(surname))
    expected = {
        sid
        for sid, p in zip(filled.session_ids, filled.people, strict=True)
        if words <= set(name_words(f"{p['given_names']} {p['surname']}"))
    }
    assert len(expected) > 60
    seen, total = await _every_page(repo, name=surname, page_size="37")
    ids = [s["session_id"] for s in seen]
    assert len(ids) == len(set(ids)) == total == len(expected) and set(ids) == expected
    assert [s["created_at"] for s in seen] == sorted((s["created_at"] for s in seen), reverse=True)

    # everything, in pages of the largest size; then each filter against the summaries
    everything, total = await _every_page(repo, page_size="200")
    assert total == NEWER + 1 and len({s["session_id"] for s in everything}) == total
    assert everything[-1]["session_id"] == old
    for flag in FLAGS:
        have = {s["session_id"] for s in everything if flag in s["flags"]}
        seen, total = await _every_page(repo, flag=flag, page_size="200")
        assert {s["session_id"] for s in seen} == have and total == len(have), flag
    for outcome, states in OUTCOMES.items():
        count = sum(s["state"] in states for s in everything)
        assert (await _find(repo, outcome=outcome))["total"] == count, outcome
    for username in filled.operators:
        decided = sum(any(d["operator"] == username for d in s["deciders"]) for s in everything)
        assert (await _find(repo, operator=username))["total"] == decided, username

    # purged: the keys go with the personal data
    await repo.purge_session_data(old, day + 86400 * 400)
    assert (await _find(repo, name="Lovelace"))["total"] == 0
    assert (await _find(repo, document="CA12345BX"))["total"] == 0
    assert [s["session_id"] for s in (await _find(repo, flag="purged"))["sessions"]] == [old]


async def test_search_api_pages_with_a_total(start_server: StartServer) -> None:
    """Over HTTP: the old session found past 2000 newer ones, the new fields, paging by
    cursor, and clear errors for a bad page size or cursor."""
    server = await start_server()
    services = server.services
    await server.operator("carla", role="compliance")
    invitation = await server.invite()
    await services.repo.put_result(
        invitation.session_id,
        "personal_data",
        {"fields": PERSON, "edited": []},
        services.clock.now(),
    )
    await fill(services.repo, NEWER, start=services.clock.now() + 1, rng=random.Random(1))
    base = f"{server.url}/api/compliance/sessions"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, server, "carla")
        status, body = await get(http, base, params={"name": "Lovelace"})
        assert status == 200, body
        assert [s["session_id"] for s in body["sessions"]] == [invitation.session_id]
        assert (body["total"], body["more"], body["next"], body["page_size"]) == (
            1, False, None, 50
        )  # fmt: skip
        status, body = await get(http, base, params={"name": "%"})
        assert (status, body["total"], body["sessions"]) == (200, 0, [])
        status, first = await get(http, base)
        assert first["total"] == NEWER + 1 and len(first["sessions"]) == 50 and first["more"]
        status, second = await get(http, base, params={"after": first["next"]})
        assert status == 200 and second["total"] == NEWER + 1
        assert first["sessions"][-1]["created_at"] > second["sessions"][0]["created_at"]
        for params, field in (
            ({"page_size": "0"}, "page_size"),
            ({"page_size": "201"}, "page_size"),
            ({"page_size": "ten"}, "page_size"),
            ({"after": "not-a-cursor"}, "after"),
            ({"after": "bmFuIHg"}, "after"),
        ):
            status, body = await get(http, base, params=params)
            assert (status, body["error"]["code"], body["error"]["field"]) == (
                400, "invalid_search", field
            ), (params, body)  # fmt: skip


async def test_migration_gives_existing_sessions_their_keys(tmp_path: Path) -> None:
    """Sessions stored before migration 0014 are found by name, number and flag after it
    (and after 0015, once the start-up has sealed them and derived their blind indexes)."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from videoid.db.models import CallItem, Customer, SessionRow, StepResult
    from videoid.db.repository import MIGRATIONS

    path = tmp_path / "old.db"
    session_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as db:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = db
        command.upgrade(cfg, "0013")
        db.execute(sa.insert(Customer).values(id=1, email="", phone="", created_at=1.0))
        db.execute(
            sa.insert(SessionRow).values(
                id=session_id,
                customer_id=1,
                state="rejected",
                ready_state="created",
                invite_token_hash="b" * 64,
                invite_expires_at=2.0,
                created_at=1.0,
                updated_at=1.0,
            )
        )
        db.execute(
            sa.insert(StepResult).values(
                session_id=session_id,
                name="personal_data",
                value=json.dumps({"fields": PERSON, "edited": ["surname"]}),
                at=1.0,
            )
        )
        db.execute(
            sa.insert(CallItem).values(
                session_id=session_id,
                kind="analysis",
                actor="system",
                at=1.0,
                data=json.dumps({"signals": {"flags": ["virtual_camera"]}}),
            )
        )
    engine.dispose()
    repo = await Repository.open(f"sqlite+aiosqlite:///{path}")
    repo.protect(PersonalData.local(tmp_path / "keys"))
    try:
        sealed = await repo.seal_plain_rows(2.0)
        assert sealed["step_results"] == 1 and sealed["session_search"] == 1, sealed
        for params in (
            {"name": "Lovelace"},
            {"document": "CA12345BX"},
            {"flag": "data_edited"},
            {"flag": "virtual_camera"},
        ):
            found = await _find(repo, **params)
            assert [s["session_id"] for s in found["sessions"]] == [session_id], params
        assert (await _find(repo, flag="no_blink"))["total"] == 0
    finally:
        await repo.close()
