"""R22 in a real browser (Debian's headless Chromium): a supervisor's first login
enrols an authenticator from the QR code (the page shows it and the key, then ten
recovery codes, once); in the Accounts tab the supervisor disables an operator, and
the server asks for a fresh code first (the code dialog), keeping what was chosen; the
operator's console is dropped and cannot log in again. A compliance officer logs in
on the compliance console with the same two steps."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from videoid.bots.operator_bot import AUTHENTICATOR

from .conftest import PASSWORD, StartServer
from .test_browser_call import chromium, console_login

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser(customer_y4m: Path) -> AsyncIterator[Any]:
    async with chromium(customer_y4m) as launched:
        yield launched


async def test_browser_login_with_enrolment_accounts_and_reauthentication(
    start_server: StartServer, browser: Any, tmp_path: Path
) -> None:
    server = await start_server(operators={"reauth_minutes": 2 / 60})
    await server.operator("sam", role="supervisor")
    await server.operator("olga")
    await server.operator("carla", role="compliance")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))  # the confirm()
    await page.goto(f"{server.url}/operator")

    # the password, then the enrolment screen: a QR code made by the server, the key
    await page.fill("#username", "sam")
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#enrol:visible")
    qr = await page.get_attribute("#enrol-qr", "src") or ""
    assert qr.startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(qr.split(",", 1)[1])
    assert await page.evaluate("document.getElementById('enrol-qr').naturalWidth") > 0
    await page.screenshot(path=str(tmp_path / "enrol.png"), full_page=True)
    await page.click("#code-cancel")  # back: the next password step enrols again
    await console_login(page, server.url, "sam")
    await page.wait_for_selector("#tabs:visible")

    # olga's console is open elsewhere
    other = await (await browser.new_context()).new_page()
    await other.goto(f"{server.url}/operator")
    await console_login(other, server.url, "olga")
    await other.wait_for_selector("#toggle-presence:visible")

    await asyncio.sleep(2.5)  # the login's code is now older than reauth_minutes
    await page.click("#tab-accounts")
    row = "#accounts tr[data-username=olga]"
    await page.wait_for_selector(row)
    await page.click(f"{row} button[data-action=disable]")
    await page.wait_for_selector("#reauth-dialog[open]")
    await page.screenshot(path=str(tmp_path / "reauth.png"), full_page=True)
    await page.fill("#reauth-code", await AUTHENTICATOR.code(server.url, "sam"))
    await page.click("#reauth-form button[type=submit]")
    await page.wait_for_selector("#accounts-result.ok")
    await page.wait_for_selector(f"{row} button[data-action=enable]")
    assert "disabled" in (await page.text_content(row) or "")
    await page.screenshot(path=str(tmp_path / "accounts.png"), full_page=True)

    # olga's console was told and went back to the login; her password step is refused
    await other.wait_for_url("**/operator?ended=revoked", timeout=10000)
    await other.wait_for_selector("#screen-login:visible")
    assert "ended" in (await other.text_content("#error") or "")
    await other.fill("#username", "olga")
    await other.fill("#password", PASSWORD)
    await other.click("#login-form button[type=submit]")
    await other.wait_for_selector("#error:visible")
    assert "disabled" in (await other.text_content("#error") or "")

    # the compliance console: the same two steps
    officer = await (await browser.new_context()).new_page()
    officer.on("pageerror", lambda e: errors.append(str(e)))
    await officer.goto(f"{server.url}/compliance")
    await console_login(officer, server.url, "carla")
    await officer.wait_for_selector("#screen-console:visible")
    assert not errors, errors
