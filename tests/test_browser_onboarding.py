"""The whole pre-call flow in a real browser (Debian's headless Chromium, fake camera fed
a real face video), in two languages and two viewports: consent (R1), a generated
document whose portrait is a real face (R2, R3), the data check, the selfie from the
camera, the A/V test with the connectivity test through the server, the queue; then
the operator console shows the data, the images and the face match. And "continue on
your phone": the QR code's link opens the same session in another browser."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from videoid.bench.documents import SyntheticDocument, make_document, portrait_from, render
from videoid.notify.sms import OutboxSms

from .conftest import PHOTOS, Server, StartServer
from .test_browser_call import chromium, console_login
from .test_translations import tables

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser(customer_hd_y4m: Path) -> AsyncIterator[Any]:
    async with chromium(customer_hd_y4m) as launched:
        yield launched


ALL_STEPS = ("consented", "documents_captured", "data_confirmed", "selfie_taken", "av_tested")


def document_files(tmp_path: Path, fmt: str, seed: int) -> tuple[SyntheticDocument, list[Path]]:
    """A synthetic document with Obama's portrait (the fake camera shows Obama too),
    saved as the customer would upload it: front first."""
    rng = random.Random(seed)
    doc = make_document(rng, "TD3" if fmt == "passport" else "TD1")
    zone_side, front = render(doc, portrait_from(PHOTOS / "obama.jpg"), rng)
    sides = [zone_side] if front is None else [front, zone_side]
    paths = []
    for i, image in enumerate(sides):
        path = tmp_path / f"{fmt}-{i}.jpg"
        image.convert("RGB").save(path, quality=92)
        paths.append(path)
    return doc, paths


async def operator_desk(server: Server, browser: Any) -> Any:
    await server.operator("olga")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    await page.goto(f"{server.url}/operator")
    await console_login(page, server.url, "olga")
    await page.wait_for_selector("#toggle-presence:visible")
    return page


@pytest.mark.parametrize(
    ("locale", "viewport", "doc_type", "switch_to"),
    [
        ("it-IT", {"width": 390, "height": 844}, "passport", None),
        ("pl-PL", {"width": 1280, "height": 860}, "id_card", "ro"),
    ],
    ids=["italian-phone-passport", "polish-desktop-id-card-then-romanian"],
)
async def test_onboarding_in_the_browser_then_the_operator_sees_it(
    start_server: StartServer,
    browser: Any,
    tmp_path: Path,
    locale: str,
    viewport: dict[str, int],
    doc_type: str,
    switch_to: str | None,
) -> None:
    server = await start_server(onboarding={"required_steps": ALL_STEPS})
    invitation = await server.invite()
    doc, files = document_files(tmp_path, doc_type, seed=11 if doc_type == "passport" else 12)
    shots = tmp_path / "shots"
    shots.mkdir()
    lang = locale[:2]

    ctx = await browser.new_context(viewport=viewport, locale=locale)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(invitation.url)

    # welcome, in the browser's language, with the steps ahead
    await page.wait_for_selector("#screen-welcome:visible", timeout=15000)
    assert await page.get_attribute("html", "lang") == lang
    start_label = {"it": "Inizia", "pl": "Rozpocznij"}[lang]
    assert (await page.text_content("#start")) == start_label
    assert await page.locator("#welcome-steps li").count() == 6
    await page.screenshot(path=str(shots / "1-welcome.png"), full_page=True)
    await page.click("#start")

    # consent: the button waits for both boxes
    await page.wait_for_selector("#screen-consent:visible")
    await page.wait_for_selector("#consent-privacy")
    assert await page.is_disabled("#consent-submit")
    await page.check("#consent-privacy")
    assert await page.is_disabled("#consent-submit")
    await page.check("#consent-terms")
    await page.screenshot(path=str(shots / "2-consent.png"), full_page=True)
    await page.click("#consent-submit")

    # the document: a wrong file first (a PDF named .jpg), then the real photos
    await page.wait_for_selector("#screen-document:visible")
    await page.select_option("#doc-country", "UTO")
    await page.select_option("#doc-type", doc_type)
    fake = tmp_path / "scan.jpg"
    fake.write_bytes(b"%PDF-1.7\n" + b"0" * 2000)
    first = "front"
    await page.set_input_files(f"#side-{first} .side-file", str(fake))
    await page.wait_for_selector("#error:visible")
    assert (await page.get_attribute("#error", "data-i18n")) == "err_unsupported_file_type"
    if doc_type != "passport":
        # the in-page camera (the fake one shows a face, not a card): the photo goes
        # through, and the customer is told, in their language, what to fix
        await page.click("#side-back .side-camera")
        await page.wait_for_selector("#camera-overlay:visible")
        for _ in range(100):  # (no wait_for_function: the page's CSP forbids eval)
            if await page.eval_on_selector("#doc-video", "v => v.videoWidth") > 0:
                break
            await page.wait_for_timeout(100)
        await page.click("#doc-shoot")
        await page.wait_for_selector("#side-back .side-status.bad", timeout=30000)
        problems = page.locator("#side-back .side-status li")
        said = {
            await li.get_attribute("data-i18n"): await li.text_content()
            for li in await problems.all()
        }
        assert "Nie widzimy wierszy znaków" in said["p_mrz_not_found"], said
        assert await page.is_hidden("#camera-overlay")
    sides = ["front"] if doc_type == "passport" else ["front", "back"]
    for side, path in zip(sides, files, strict=True):
        await page.set_input_files(f"#side-{side} .side-file", str(path))
        await page.wait_for_selector(f"#side-{side} .side-status.ok", timeout=30000)
    await page.screenshot(path=str(shots / "3-document.png"), full_page=True)
    await page.click("#doc-continue")

    # the data, pre-filled from the zone; a name in the wrong script is refused
    await page.wait_for_selector("#screen-data:visible")
    assert await page.input_value("#f-document_number") == doc.document_number
    assert await page.input_value("#f-date_of_birth") == doc.date_of_birth.isoformat()
    assert await page.input_value("#f-email") == "ada@example.org"
    if switch_to:
        await page.select_option("#lang", switch_to)
        lang = switch_to
        assert await page.get_attribute("html", "lang") == switch_to
    surname = await page.input_value("#f-surname")
    await page.fill("#f-surname", "Обама")
    await page.click("#data-submit")
    error = page.locator('.field[data-field="surname"] .field-error')
    await error.wait_for()
    expected = {
        "it": "Scrivilo in lettere latine, come sul documento.",
        "ro": "Scrie cu litere latine, ca pe document.",
    }[lang]
    assert (await error.text_content()) == expected
    await page.fill("#f-surname", surname)
    await page.fill("#f-given_names", doc.given_names + " Extra")
    # a mobile number of their own, not the invitation's: judged once the code sent to
    # it comes back (issue 14, item 6)
    await page.fill("#f-phone", "+393471112233")
    await page.screenshot(path=str(shots / "4-data.png"), full_page=True)
    await page.click("#data-submit")
    await page.wait_for_selector("#f-phone_code:visible")
    assert await page.is_hidden("#f-email_code")
    sent = await page.text_content('.field[data-field="phone_code"] .code-sent')
    assert sent is not None and "+39" in sent and "1112233" not in sent, sent
    messages = OutboxSms(server.services.sms.path).messages("+393471112233")  # type: ignore[attr-defined]
    code = re.search(r"\b(\d{6})\b", messages[-1]["text"])
    assert code is not None and len(messages) == 1
    await page.fill("#f-phone_code", f"{(int(code.group(1)) + 1) % 1_000_000:06d}")
    await page.click("#data-submit")
    code_error = page.locator('.field[data-field="phone_code"] .field-error')
    await code_error.wait_for()
    assert await code_error.get_attribute("data-i18n") == "err_otp_wrong"
    await page.screenshot(path=str(shots / "4-data-code.png"), full_page=True)
    await page.fill("#f-phone_code", code.group(1))
    await page.click("#data-submit")

    # the selfie from the camera (Obama's face video), with a retake
    await page.wait_for_selector("#selfie-take:enabled", timeout=15000)
    await page.wait_for_timeout(500)
    await page.click("#selfie-take")
    await page.click("#selfie-retake")
    await page.click("#selfie-take")
    await page.screenshot(path=str(shots / "5-selfie.png"), full_page=True)
    await page.click("#selfie-use")

    # the A/V test: the fake microphone's beep moves the meter; the connectivity test
    # runs through the server by itself; the customer confirms the sound
    await page.wait_for_selector("#screen-avtest:visible", timeout=30000)
    await page.wait_for_selector("#net-status.ok", timeout=30000)
    await page.wait_for_selector('#mic-status[data-i18n="av_mic_ok"]', timeout=15000)
    await page.click("#speaker-play")
    await page.click("#speaker-yes")
    await page.screenshot(path=str(shots / "6-avtest.png"), full_page=True)
    await page.click("#av-continue")

    # the queue
    await page.wait_for_selector("#join:enabled", timeout=15000)
    await page.click("#join")
    await page.wait_for_selector("#screen-waiting:visible")
    await page.screenshot(path=str(shots / "7-waiting.png"), full_page=True)

    # the operator takes the call and sees what onboarding produced
    operator = await operator_desk(server, browser)
    await operator.click("#toggle-presence")
    await operator.wait_for_selector("#accept:visible", timeout=15000)
    await operator.click("#accept")
    await operator.wait_for_selector("#onboarding:visible", timeout=15000)
    await operator.wait_for_selector("#ob-match[data-match=yes]")
    number = operator.locator('#ob-data tr[data-field="document_number"] td')
    assert await number.nth(1).text_content() == doc.document_number
    assert "edited" in (
        await operator.get_attribute('#ob-data tr[data-field="given_names"]', "class") or ""
    )
    assert await operator.locator("#ob-checks .check-bad").count() == 0
    images = operator.locator("#ob-images img")
    expected_images = {"front", "portrait", "selfie"} | (
        {"back"} if doc_type != "passport" else set()
    )
    assert {
        await images.nth(i).get_attribute("data-name") for i in range(await images.count())
    } == (expected_images)
    for i in range(await images.count()):
        await images.nth(i).evaluate("img => img.decode()")
        assert await images.nth(i).evaluate("img => img.naturalWidth") > 100
    await images.first.click()
    await operator.wait_for_selector("#viewer:visible")
    await operator.click("#zoom-in")
    await operator.screenshot(path=str(shots / "8-operator-zoom.png"))
    await operator.click("#viewer-close")
    await operator.screenshot(path=str(shots / "9-operator.png"), full_page=True)
    await page.wait_for_selector("#screen-call:visible", timeout=15000)

    results = await server.services.repo.results(invitation.session_id)
    assert results["selfie"]["match"]["match"] is True
    assert results["av_test"]["connectivity"]["passed"] is True
    assert results["personal_data"]["edited"] == ["given_names"]
    consents = await server.services.repo.consents(invitation.session_id)
    assert {c["language"] for c in consents} == {locale[:2]}
    assert errors == []
    await ctx.close()


async def test_continue_on_the_phone(
    start_server: StartServer,
    browser: Any,
) -> None:
    server = await start_server(onboarding={"required_steps": ALL_STEPS})
    invitation = await server.invite()
    desktop = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    await desktop.goto(invitation.url)
    await desktop.click("#start")
    await desktop.check("#consent-privacy")
    await desktop.check("#consent-terms")
    await desktop.click("#consent-submit")
    await desktop.wait_for_selector("#screen-document:visible")
    await desktop.click("#handover-start")
    await desktop.wait_for_selector("#screen-handover:visible")
    link = await desktop.get_attribute("#handover-url", "href")
    assert link is not None and "#handover=" in link
    assert await desktop.evaluate("document.getElementById('handover-qr').naturalWidth") > 0

    phone_ctx = await browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    phone = await phone_ctx.new_page()
    await phone.goto(link)
    # the same session, at the same step; the link no longer carries the handover code
    await phone.wait_for_selector("#screen-document:visible", timeout=15000)
    assert "handover=" not in phone.url
    assert await phone.is_hidden("#phone-offer")
    # the code works once
    again = await (await browser.new_context()).new_page()
    await again.goto(link)
    await again.wait_for_selector("#error:visible", timeout=15000)
    assert await again.get_attribute("#error", "data-i18n") == "err_handover_invalid"
    # the phone can reload: it holds its own device token now
    await phone.reload()
    await phone.wait_for_selector("#screen-document:visible", timeout=15000)
    await phone_ctx.close()


async def test_a_browser_without_webrtc_gets_specific_advice(
    start_server: StartServer,
    browser: Any,
) -> None:
    server = await start_server(onboarding={"required_steps": ALL_STEPS})
    invitation = await server.invite()
    ctx = await browser.new_context(locale="ro-RO")
    await ctx.add_init_script("delete window.RTCPeerConnection")
    page = await ctx.new_page()
    await page.goto(invitation.url)
    await page.wait_for_selector("#advice:visible", timeout=15000)
    assert await page.get_attribute("#advice", "data-i18n") == "adv_unsupported"
    assert "Acest browser nu poate face apeluri video" in (await page.text_content("#advice") or "")
    await ctx.close()


async def test_the_contract_page_speaks_the_customers_language(
    start_server: StartServer, browser: Any
) -> None:
    """The signed contract's page (/contract#<token>, from the activation e-mail) in the
    browser's language, with the same language choice as the customer page; its errors
    translated too."""
    server = await start_server()
    strings = tables()
    errors: list[str] = []
    for locale in ("it-IT", "pl-PL"):
        lang = locale[:2]
        texts = strings[lang]
        page = await (await browser.new_context(locale=locale)).new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{server.url}/contract#{'x' * 43}")  # a link that opens nothing
        await page.wait_for_selector("h1[data-i18n=contract_page_title]")
        assert await page.get_attribute("html", "lang") == lang
        assert await page.text_content("h1") == texts["contract_page_title"]
        assert await page.text_content("#download") == texts["contract_page_download"]
        assert await page.title() == texts["contract_page_title"]
        await page.click("#download")
        await page.wait_for_selector("#status[data-i18n=err_link_invalid]")
        assert await page.text_content("#status") == texts["err_link_invalid"]
        await page.select_option("#lang", "ro")
        assert await page.text_content("h1") == strings["ro"]["contract_page_title"]
        assert await page.text_content("#status") == strings["ro"]["err_link_invalid"]
        assert not errors, errors
