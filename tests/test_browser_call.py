"""The live call in a real browser: headless Chromium (Debian's) with a fake camera fed a
real face video; the customer page in one context, the operator console in another."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from videoid.bots.signaling_client import SignalingClient

from .conftest import PASSWORD, StartServer

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium_args(y4m: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
    ]


@contextlib.asynccontextmanager
async def chromium(y4m: Path) -> AsyncIterator[Any]:
    """Headless Chromium whose fake camera plays ``y4m``."""
    playwright_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run ./scripts/setup --test")
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_args(y4m)
        )
        yield browser
        await browser.close()


async def console_login(page: Any, base: str, username: str) -> None:
    """Logs in on a staff console's page as a person would: the password, then a code
    of the authenticator (:data:`AUTHENTICATOR`); at the account's first login the key
    is read from the enrolment screen (what a person's app scans from the QR code), its
    code confirmed, and the recovery codes acknowledged."""
    from videoid.bots.operator_bot import AUTHENTICATOR
    from videoid.operator_console import totp

    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#screen-second-factor:visible")
    if await page.is_visible("#enrol"):
        secret = totp.secret_from_text(await page.text_content("#enrol-secret") or "")
        step = totp.step_at(time.time())
        AUTHENTICATOR.enrolled(base, username, secret, step)
        await page.fill("#code", totp.code_at(secret, step))
        await page.click("#code-form button[type=submit]")
        await page.wait_for_selector("#screen-recovery:visible")
        assert len(await page.query_selector_all("#recovery-codes li")) == 10
        await page.click("#recovery-done")
    else:
        await page.fill("#code", await AUTHENTICATOR.code(base, username))
        await page.click("#code-form button[type=submit]")
    await page.wait_for_selector("#screen-second-factor", state="hidden")


@pytest.fixture
async def browser(customer_y4m: Path) -> AsyncIterator[Any]:
    async with chromium(customer_y4m) as launched:
        yield launched


async def video_frames(page, selector: str) -> int:
    return int(
        await page.eval_on_selector(selector, "v => v.getVideoPlaybackQuality().totalVideoFrames")
    )


async def wait_frames(page, selector: str, count: int, timeout_seconds: float) -> int:
    deadline = time.monotonic() + timeout_seconds
    frames = 0
    while time.monotonic() < deadline:
        frames = await video_frames(page, selector)
        if frames >= count:
            break
        await page.wait_for_timeout(200)
    return frames


async def test_browser_call_with_the_operators_tools(
    start_server: StartServer, browser, tmp_path: Path
) -> None:
    """One whole call in the operator console: live signals, a challenge, a snapshot and
    its zoom, chat both ways, the SMS code read back (from the development outbox, as the
    customer would read it from their phone), the checklist, and the approval it unlocks,
    after a code the console asks for (the login's is older than ``reauth_minutes``)."""
    import asyncio

    from videoid.bots.operator_bot import AUTHENTICATOR

    server = await start_server(
        live={"challenge_seconds": 3.0}, operators={"reauth_minutes": 5 / 60}
    )
    await server.operator("olga")
    invitation = await server.invite(phone="+393471234567")
    shots = tmp_path / "shots"
    shots.mkdir()

    operator_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    customer_ctx = await browser.new_context(viewport={"width": 390, "height": 844})
    operator = await operator_ctx.new_page()
    customer = await customer_ctx.new_page()
    errors: list[str] = []
    for page in (operator, customer):
        page.on("pageerror", lambda e: errors.append(str(e)))

    await operator.goto(f"{server.url}/operator")
    await console_login(operator, server.url, "olga")
    logged_in = time.time()
    await operator.wait_for_selector("#toggle-presence:visible")
    await operator.click("#toggle-presence")
    await operator.wait_for_selector("#presence.available")

    await customer.goto(invitation.url)
    await customer.wait_for_selector("#join:enabled", timeout=15000)
    await customer.click("#join")

    await operator.wait_for_selector("#accept:visible", timeout=15000)
    await operator.click("#accept")
    await customer.wait_for_selector("#screen-call:visible", timeout=15000)

    # both pages play the other side's video, through the server
    assert await wait_frames(operator, "#remote", 15, 20) >= 15
    assert await wait_frames(customer, "#remote", 15, 20) >= 15
    for button in ("#approve", "#reject", "#suspend"):  # the checklist is not answered
        assert await operator.is_disabled(button)

    # live signals: a face, the picture's quality, and Chromium's camera named for what it
    # is: a video file (flagged as a virtual camera)
    await operator.wait_for_selector("#sig-table tr[data-signal=faces]", timeout=20000)
    assert await operator.text_content("#sig-table tr[data-signal=faces] td:nth-child(2)") == "1"
    await operator.wait_for_selector("#sig-flags [data-flag=virtual_camera]", timeout=10000)
    assert "obama.y4m" in (await operator.text_content("#sig-table tr[data-signal=camera]") or "")
    quality = await operator.text_content("#sig-table tr[data-signal=quality]") or ""
    assert "640\u00d7480" in quality

    # a challenge: the customer sees the instruction; the still face does not turn
    await operator.click("button[data-challenge=turn_left]")
    await customer.wait_for_selector("#challenge[data-kind=turn_left]:visible", timeout=5000)
    assert "left" in (await customer.text_content("#challenge-text") or "")
    await operator.wait_for_selector(
        "#challenge-list li[data-kind=turn_left][data-result=failed]", timeout=15000
    )

    # a snapshot, opened in the zoomable viewer
    await operator.click("button[data-snap=face]")
    await operator.wait_for_selector("#snap-thumbs img[data-kind=face]", timeout=10000)
    await operator.click("#snap-thumbs img[data-kind=face]")
    await operator.wait_for_selector("#viewer:visible")
    await operator.click("#zoom-in")
    await operator.click("#viewer-close")

    # chat both ways
    await customer.fill("#chat-text", "The sound is choppy")
    await customer.click("#chat-form button")
    await operator.wait_for_selector("#chat-log p.chat-customer", timeout=5000)
    assert "choppy" in (await operator.text_content("#chat-log p.chat-customer") or "")
    await operator.fill("#chat-text", "I will type, then")
    await operator.click("#chat-form button")
    await customer.wait_for_selector("#chat-log p.chat-operator", timeout=5000)

    # the SMS code: sent, read from the customer's "phone" (the outbox), typed, checked
    await operator.click("#otp-send")
    await customer.wait_for_selector("#otp-notice:visible", timeout=5000)
    messages = server.services.sms.messages("+393471234567")  # type: ignore[attr-defined]
    code = messages[-1]["text"].split("code is ")[1][:6]
    await operator.fill("#otp-code", code)
    await operator.click("#otp-check")
    await operator.wait_for_selector("#otp-status[data-result=matched]", timeout=5000)
    await operator.wait_for_selector("#checklist-items li[data-item=otp][data-answer=passed]")

    # the rest of the checklist, item by item; approval unlocks at the end
    while await operator.query_selector("#checklist-items li button[data-answer=passed]"):
        assert await operator.is_disabled("#approve")
        await operator.click("#checklist-items li button[data-answer=passed] >> nth=0")
        await operator.wait_for_timeout(100)
    await operator.wait_for_selector("#approve:enabled", timeout=5000)
    await operator.screenshot(path=str(shots / "operator-call.png"), full_page=True)
    await customer.screenshot(path=str(shots / "customer-call.png"))

    await operator.select_option("#reason", "identity_verified")
    await operator.fill("#reason-text", "all checks passed")
    await asyncio.sleep(max(0.0, logged_in + 5.5 - time.time()))  # past reauth_minutes
    await operator.click("#approve")
    await operator.wait_for_selector("#reauth-dialog[open]")
    await operator.fill("#reauth-code", await AUTHENTICATOR.code(server.url, "olga"))
    await operator.click("#reauth-form button[type=submit]")
    await customer.wait_for_selector("body[data-outcome=approved]", timeout=10000)
    assert "successful" in (await customer.text_content("#outcome-title") or "")
    await operator.wait_for_selector("#last-decision:visible")

    record = await server.services.repo.find_session(id=invitation.session_id)
    assert record is not None and record.state == "approved"
    decisions = await server.services.repo.decisions(invitation.session_id)
    assert [(d.outcome, d.reason_code, d.reason_text) for d in decisions] == [
        ("approved", "identity_verified", "all checks passed")
    ]
    items = await server.services.repo.items(invitation.session_id, ["checklist"])
    assert items[-1]["data"]["complete"] is True
    assert errors == []
    await operator_ctx.close()
    await customer_ctx.close()


async def test_browser_four_eyes_review_and_dashboard(
    start_server: StartServer, browser, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    """A supervisor in the console: the dashboard's figures, then the review of a session
    another operator suspended, seeing what the operator saw, and deciding it (R15); the
    decision comes after the re-authentication window, so the console asks for a code
    first and then sends it, the note as typed (R22)."""
    import asyncio

    from videoid.bots.customer_bot import CustomerBot
    from videoid.bots.operator_bot import AUTHENTICATOR, OperatorBot

    server = await start_server(operators={"reauth_minutes": 2 / 60})
    await server.operator("olga")
    await server.operator("sam", role="supervisor")
    invitation = await server.invite()
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="suspended", watch_seconds=1
    )
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)

    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{server.url}/operator")
    await console_login(page, server.url, "sam")
    logged_in = time.time()
    await page.wait_for_selector("#tabs:visible")

    await page.click("#tab-dashboard")
    await page.wait_for_selector("#dash-operators tr[data-operator=sam]", timeout=10000)
    assert await page.text_content("#dash-handled") == "1"
    assert await page.text_content("#dash-reviews") == "1"
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    await page.click("#tab-reviews")
    row = f"#reviews tr[data-session='{invitation.session_id}']"
    await page.wait_for_selector(row, timeout=10000)
    assert "olga" in (await page.text_content(row) or "")
    await page.click(f"{row} button")
    await page.wait_for_selector("#review:visible")
    await page.wait_for_selector("#review-call h3")
    assert "needs a second review" in (await page.text_content("#review-decisions") or "").lower()
    # what the operator saw: the checklist as it was left, the signals at the call's end
    assert await page.query_selector("#review-call li[data-item=greeting]") is not None
    assert "frames analysed" in (await page.text_content("#review-call") or "")
    await page.select_option("#review-reason", "identity_verified")
    await page.fill("#review-text", "Looked again at the snapshots: fine")
    await asyncio.sleep(max(0.0, logged_in + 2.5 - time.time()))  # past reauth_minutes
    await page.click("#review-approve")
    await page.wait_for_selector("#reauth-dialog[open]")
    await page.fill("#reauth-code", await AUTHENTICATOR.code(server.url, "sam"))
    await page.click("#reauth-form button[type=submit]")
    await page.wait_for_selector("#review-result:visible", timeout=10000)
    assert "approved" in (await page.text_content("#review-result") or "")
    await page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

    record = await server.services.repo.find_session(id=invitation.session_id)
    assert record is not None and record.state == "approved"
    decisions = await server.services.repo.decisions(invitation.session_id)
    assert [d.outcome for d in decisions] == ["suspended", "approved"]
    assert decisions[1].reason_text == "Looked again at the snapshots: fine"
    assert errors == []
    await ctx.close()


async def test_the_console_says_when_the_customer_never_joined_the_call(
    start_server: StartServer, browser
) -> None:
    """Issue 14, item 9's ``customer_gone``, as the operator reads it: a call whose
    customer never joins ends with a clear message, and the console is free again."""
    server = await start_server(call={"connect_seconds": 2.0})
    await server.operator("olga")
    invitation = await server.invite()
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{server.url}/operator")
    await console_login(page, server.url, "olga")
    await page.wait_for_selector("#toggle-presence:visible")
    await page.click("#toggle-presence")
    await page.wait_for_selector("#presence.available")
    customer = SignalingClient(server.url, "/customer")  # queues, then never sends media
    await customer.connect({"token": invitation.token})
    try:
        await customer.request("join_queue")
        await page.wait_for_selector("#accept:visible", timeout=15000)
        await page.click("#accept")
        said = page.locator("#last-decision[data-reason=customer_gone]")
        await said.wait_for(timeout=15000)
        assert "did not join the call in time" in (await said.text_content() or "")
        assert await page.is_hidden("#call") and await page.is_visible("#idle")
    finally:
        await customer.close()
    assert not errors, errors
