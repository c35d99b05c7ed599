"""After a real approved call: the customer requests the certificate, reads the
contract, sets a PIN (its PUK shown once), receives the code by SMS (development
outbox), signs; the signed contract validates; the e-mail says the certificate is
active. And every bad input the issue names, with its stable code (R16-R19)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from videoid.notify import OutboxSms
from videoid.notify.mail import OutboxMail
from videoid.trust.signing import archive_state

from .conftest import Server, StartServer
from .test_ca import fetch, pem
from .test_call_end_to_end import run_call
from .test_compliance import PERSON
from .test_signing import assert_valid_offline, run

PIN = "493817"


class Customer:
    def __init__(self, server: Server, token: str) -> None:
        self.base = f"{server.url}/api/signing"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str = "", body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=self.headers) as http,
            http.request(method, self.base + path, json=body) as r,
        ):
            if r.content_type == "application/pdf":
                return r.status, await r.read()
            return r.status, await r.json()


def last_code(server: Server) -> tuple[str, str]:
    message = OutboxSms(server.services.sms.path).messages()[-1]  # type: ignore[attr-defined]
    code = re.search(r"\b(\d{6})\b", message["text"])
    assert code is not None
    return code.group(1), message["text"]


async def approved(
    start_server: StartServer,
    customer_video: Path,
    operator_video: Path,
    before_call: Any = None,
    **sections: Any,
):
    server = await start_server(live={"workers": 0}, **sections)
    invitation, result, _ = await run_call(
        server, customer_video, operator_video, before_call=before_call
    )
    assert result.outcome == "approved"
    fields = {**PERSON, "surname": "Lovelace", "given_names": "Ada"}
    await server.services.repo.put_result(
        invitation.session_id, "personal_data", {"fields": fields, "edited": []},
        server.services.clock.now(),
    )  # fmt: skip
    return server, invitation, Customer(server, invitation.url.split("#", 1)[1])


async def certificate_and_signature(server: Server, me: Customer) -> str:
    """The customer's steps after the approval, each answered: certificate, PIN, SMS
    code, signature. The code they signed with."""
    assert (await me.call("POST", "/certificate"))[0] == 200
    assert (await me.call("GET", "/contract"))[0] == 200  # the text, read
    assert (await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN}))[0] == 200
    assert (await me.call("POST", "/code"))[0] == 200
    code, _ = last_code(server)
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
    assert status == 200 and body["signed"], body
    return code


async def test_a_contract_never_fetched_cannot_be_signed(
    database_url: str, start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    """Issue 14, item 10: the signature needs the customer to have been given the very
    contract it signs (its text or its PDF); until then ``contract_not_fetched``, and
    no code or PIN attempt is spent on it."""
    server, invitation, me = await approved(
        start_server, customer_video, operator_video, database_url=database_url
    )
    assert (await me.call("POST", "/certificate"))[0] == 200
    assert (await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN}))[0] == 200
    assert (await me.call("POST", "/code"))[0] == 200
    code, _ = last_code(server)
    for _ in range(4):  # more than the code's and the PIN's tries: none is spent
        status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
        assert (status, body["error"]["code"]) == (409, "contract_not_fetched"), body
    stored = await server.services.repo.latest_code(invitation.session_id, "signature")
    assert stored is not None and stored.attempts == 0
    status, contract = await me.call("GET", "/contract.pdf")  # the PDF counts as fetched
    assert status == 200 and contract.startswith(b"%PDF")
    fetched = (await server.services.repo.results(invitation.session_id))["contract_fetched"]
    assert fetched["sha256"] == hashlib.sha256(contract).hexdigest() and fetched["as"] == "pdf"
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
    assert status == 200 and body["signed"] is True, body


async def test_certificate_pin_code_sign_and_mail(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server, invitation, me = await approved(start_server, customer_video, operator_video)

    # before the certificate: no contract, no PIN, no code
    status, body = await me.call("GET")
    assert status == 200 and body["state"] == "approved" and body["certificate"] is None
    assert body["to_issue"]["name"] == "Ada Lovelace"
    assert (await me.call("GET", "/contract.pdf"))[1]["error"]["code"] == "no_contract"
    status, body = await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN})
    assert (status, body["error"]["code"]) == (409, "step_not_allowed")

    status, body = await me.call("POST", "/certificate")
    assert status == 200 and len(body["serial"]) >= 20, body
    status, body = await me.call("POST", "/certificate")  # not twice
    assert (status, body["error"]["code"]) == (409, "step_not_allowed")
    status, contract = await me.call("GET", "/contract.pdf")
    assert status == 200 and contract.startswith(b"%PDF")
    (tmp_path / "contract.pdf").write_bytes(contract)
    _, text = await asyncio.to_thread(run, "pdftotext", str(tmp_path / "contract.pdf"), "-")
    assert "Lovelace" in text, text  # the text is glyph ids of the embedded font: extracted

    # the PIN: the policy, then once; the PUK shown once
    for bad, code in (("123456", "pin_trivial"), ("12345", "pin_format")):
        status, body = await me.call("POST", "/pin", {"pin": bad, "pin_again": bad})
        assert (status, body["error"]["code"]) == (400, code)
    status, body = await me.call("POST", "/pin", {"pin": PIN, "pin_again": "493818"})
    assert body["error"]["code"] == "pin_mismatch"
    status, body = await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN})
    assert status == 200 and len(body["puk"]) == 12
    puk = body["puk"]
    status, body = await me.call("POST", "/pin", {"pin": "583920", "pin_again": "583920"})
    assert (status, body["error"]["code"]) == (409, "pin_already_set")

    # the code: by SMS, naming the document, bound to it
    status, body = await me.call("POST", "/code")
    assert status == 200 and body["sent_to"].startswith("+39"), body
    code, text = last_code(server)
    assert "Contract for a qualified signature certificate" in text and body["document_ref"] in text
    stored = await server.services.repo.latest_code(invitation.session_id, "signature")
    assert stored is not None and code not in stored.code_hash

    # wrong PIN twice (counted), the right PIN with a wrong code, then both right
    for left in (2, 1):
        status, body = await me.call("POST", "/sign", {"pin": "111333", "code": code})
        assert (status, body["error"]["code"]) == (403, "pin_wrong") and str(left) in body["error"][
            "message"
        ]
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": "000000"})
    assert body["error"]["code"] in ("otp_wrong", "otp_locked"), body
    # each attempt took one of the code's three: a new code (R17)
    assert (await me.call("POST", "/code"))[0] == 200
    code, _ = last_code(server)
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
    assert status == 200 and body["signed"] is True, body
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})  # not twice
    assert (status, body["error"]["code"]) == (409, "step_not_allowed")

    status, signed = await me.call("GET", "/signed.pdf")
    assert status == 200 and signed.startswith(b"%PDF") and len(signed) > len(contract)
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    _, out = await asyncio.to_thread(run, "pdfsig", str(path))
    assert "Signature is Valid." in out and "Ada Lovelace" in out, out

    record = await server.services.repo.find_session(id=invitation.session_id)
    assert record is not None and record.state == "completed"
    states = [to for _, to, _, _ in await server.services.repo.transitions(invitation.session_id)]
    assert states[-3:] == ["certificate_requested", "contract_signed", "completed"]
    mail = OutboxMail(server.services.config.data_path / "outbox" / "mail.jsonl").messages()
    assert mail and "certificate is active" in mail[-1]["subject"]
    assert puk not in str(mail) and PIN not in str(mail) and code not in str(mail)
    actions = [e.action for e in await server.services.repo.audit_entries()]
    assert {"certificate_issued", "pin_set", "signature_code_sent", "contract_signed"} <= set(
        actions
    )

    # the e-mail's link to the signed contract (R14.7): its page, then one download
    link = re.search(r"(http://\S+)/contract#(\S+)", mail[-1]["text"])
    assert link is not None and link.group(1) == server.url
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/contract") as r:
        assert r.status == 200 and "/static/contract.js" in await r.text()
    by_link = Customer(server, link.group(2))
    by_link.base = f"{server.url}/api/signing/download"
    assert await by_link.call("GET") == (200, signed)
    status, body = await by_link.call("GET")  # once
    assert (status, body["error"]["code"]) == (401, "link_invalid")
    # and only within its validity
    expired = await server.services.signing._contract_link(invitation.session_id, 0.5 / 3600)
    await asyncio.sleep(0.6)
    by_link = Customer(server, expired.split("#", 1)[1])
    by_link.base = f"{server.url}/api/signing/download"
    status, body = await by_link.call("GET")
    assert (status, body["error"]["code"]) == (401, "link_invalid")


async def test_lockout_unblock_and_revoked(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server, invitation, me = await approved(start_server, customer_video, operator_video)
    await me.call("POST", "/certificate")
    await me.call("GET", "/contract")
    puk = (await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN}))[1]["puk"]
    await me.call("POST", "/code")
    code, _ = last_code(server)
    for _ in range(2):
        await me.call("POST", "/sign", {"pin": "111333", "code": code})
    status, body = await me.call("POST", "/sign", {"pin": "111333", "code": code})
    assert (status, body["error"]["code"]) == (403, "pin_locked")
    # a new connection (a new token use) changes nothing: the counter is stored
    again = Customer(server, me.headers["Authorization"].split(" ", 1)[1])
    status, body = await again.call("POST", "/sign", {"pin": PIN, "code": code})
    assert body["error"]["code"] == "pin_locked"
    status, body = await again.call("GET")
    assert body["pin_locked"] is True
    status, body = await me.call(
        "POST", "/unblock", {"puk": "000000000000", "pin": "583920", "pin_again": "583920"}
    )
    assert body["error"]["code"] == "puk_wrong"
    status, body = await me.call(
        "POST", "/unblock", {"puk": puk, "pin": "583920", "pin_again": "583920"}
    )
    assert status == 200, body

    # the certificate revoked: signing is refused
    [certificate] = await server.services.repo.certificates(
        kind="customer", session_id=invitation.session_id
    )
    await server.services.trust.revoke(certificate.serial, "key_compromise", "test")
    status, body = await me.call("POST", "/sign", {"pin": "583920", "code": code})
    assert body["error"]["code"] == "certificate_revoked"
    # another customer's token reaches only their own session: not approved, no contract
    other = await server.invite("grace@example.org", "+393471234568")
    them = Customer(server, other.url.split("#", 1)[1])
    status, body = await them.call("GET", "/contract.pdf")
    assert (status, body["error"]["code"]) == (409, "no_contract")
    status, body = await them.call("POST", "/sign", {"pin": PIN, "code": code})
    assert (status, body["error"]["code"]) == (409, "step_not_allowed")  # before approval
    status, body = await them.call("POST", "/certificate")
    assert (status, body["error"]["code"]) == (409, "step_not_allowed")
    status, body = await me.call("POST", "/sign", "not an object")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = await Customer(server, "forged-token").call("GET")
    assert status in (401, 403) and "error" in body


@pytest.mark.browser
async def test_browser_certificate_and_signature_with_smtp(
    start_server: StartServer,
    customer_video: Path,
    operator_video: Path,
    customer_y4m: Path,
    tmp_path: Path,
) -> None:
    """The customer, after a real approved call, in a real browser: the certificate, the
    contract page by page, the PIN and its PUK, the SMS code from the development
    outbox, the signature; the signed contract downloads and validates; the e-mail
    reaches a real SMTP server started here."""
    from aiosmtpd.controller import Controller

    from .conftest import free_port
    from .test_browser_call import chromium

    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    smtp = Controller(Inbox(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        server, invitation, _ = await approved(
            start_server, customer_video, operator_video,
            mail={"backend": "smtp", "host": "127.0.0.1", "port": smtp.port},
        )  # fmt: skip
        async with chromium(customer_y4m) as browser:
            ctx = await browser.new_context(
                accept_downloads=True, viewport={"width": 1100, "height": 1000}
            )
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(invitation.url)
            await page.wait_for_selector("#sign-request:visible", timeout=15000)
            assert "Ada Lovelace" in (await page.text_content("#sign-name") or "")
            # honest qualification: SoftHSM is no QSCD, and the page says so
            kind = await page.text_content("#sign-kind") or ""
            assert "QCP-n)" in kind and "not qualified electronic signatures" in kind, kind
            await page.click("#sign-request-button")
            await page.wait_for_selector("#sign-contract:visible", timeout=15000)
            first = await page.text_content("#contract-page") or ""
            assert "CONTRACT FOR A QUALIFIED ELECTRONIC SIGNATURE CERTIFICATE" in first
            count = await page.text_content("#contract-count") or ""
            total = int(count.split("/")[1])
            assert await page.is_disabled("#contract-read") == (total > 1)
            for _ in range(total - 1):  # page by page, to the end
                await page.click("#contract-next")
            assert "Signed by the Customer" in (await page.text_content("#contract-page") or "")
            await page.check("#contract-read")
            await page.wait_for_selector("#sign-pin:visible")
            await page.fill("#pin", "123456")
            await page.fill("#pin-again", "123456")
            await page.click("#pin-set")
            await page.wait_for_selector("#error:visible")
            assert "easy to guess" in (await page.text_content("#error") or "")
            await page.fill("#pin", PIN)
            await page.fill("#pin-again", PIN)
            await page.click("#pin-set")
            await page.wait_for_selector("#sign-puk:visible")
            puk = (await page.text_content("#puk-value") or "").replace(" ", "")
            assert len(puk) == 12 and puk.isdigit()
            await page.click("#puk-kept")
            await page.wait_for_selector("#sign-sign:visible")
            await page.click("#code-send")
            await page.wait_for_function(
                "() => document.getElementById('code-sent').textContent.length > 0"
            )
            code, _ = last_code(server)
            await page.fill("#sign-pin-input", PIN)
            await page.fill("#sign-code", code)
            await page.click("#sign-button")
            await page.wait_for_selector("#sign-done:visible", timeout=30000)
            async with page.expect_download() as info:
                await page.click("#signed-download")
            download = await info.value
            path = tmp_path / "signed.pdf"
            await download.save_as(str(path))
            await page.screenshot(path=str(tmp_path / "signed.png"), full_page=True)
            assert errors == []
            await ctx.close()
        _, out = await asyncio.to_thread(run, "pdfsig", str(path))
        assert "Signature is Valid." in out, out
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.1)
        [mail] = received
        assert mail.rcpt_tos == ["ada@example.org"]
        assert b"certificate is active" in mail.content and PIN.encode() not in mail.content
    finally:
        smtp.stop()


async def test_the_customer_bot_goes_on_to_sign(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    """The customer bot, after its approved call, gets the certificate and signs with
    ``--pin``, the code taken from the development outbox; the contract it saves is
    valid."""
    from videoid.bots.customer_bot import CustomerBot

    server, invitation, _ = await approved(start_server, customer_video, operator_video)
    bot = CustomerBot(
        invitation.url, None, sms_outbox=server.services.sms.path, phone="+393471234567"
    )  # type: ignore[attr-defined]
    saved = tmp_path / "contract.pdf"
    signed = await bot.certificate_and_signature(PIN, saved)
    assert saved.read_bytes() == signed
    assert [name for name, _ in bot.result.steps] == [
        "certificate", "contract", "pin", "code", "signed"
    ]  # fmt: skip
    _, out = await asyncio.to_thread(run, "pdfsig", str(saved))
    assert "Signature is Valid." in out, out


async def test_an_italian_pdf_a_contract_signed_b_lta_and_extended(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    """The customer gave consent in Italian: the contract is in Italian, PDF/A-2b (XMP
    pdfaid 2/B, an sRGB output intent, every font embedded), says the key is not in a
    QSCD (the default), and once signed validates offline as B-LTA; ``videoid signatures
    extend`` then adds an archive timestamp as a new version, audited, and it still
    validates."""

    async def consent_in_italian(server: Server, invitation: Any) -> None:
        # before the call: the decision's seal covers it, as a real consent's would
        await server.services.repo.add_consent(
            invitation.session_id, document="terms", version="1", language="it",
            text_sha256="0" * 64, client_address="127.0.0.1", now=server.services.clock.now(),
        )  # fmt: skip

    server, invitation, me = await approved(
        start_server, customer_video, operator_video, before_call=consent_in_italian
    )
    session_id = invitation.session_id
    status, body = await me.call("GET")
    assert body["to_issue"]["qscd"] is False and "QCP-n," in body["to_issue"]["kind"]
    await me.call("POST", "/certificate")
    status, contract = await me.call("GET", "/contract.pdf")
    unsigned = tmp_path / "contract.pdf"
    unsigned.write_bytes(contract)
    _, text = await asyncio.to_thread(run, "pdftotext", str(unsigned), "-")
    assert "CONTRATTO PER UN CERTIFICATO QUALIFICATO" in text, text
    assert "NON è un dispositivo" in text and "firme elettroniche avanzate" in text, text
    assert "qualified signature creation device" not in text
    _, fonts = await asyncio.to_thread(run, "pdffonts", str(unsigned))
    rows = [line.split() for line in fonts.splitlines()[2:] if line.strip()]
    assert rows and all(r[-5] == "yes" for r in rows), fonts  # the "emb" column
    assert "DejaVuSans" in fonts and "Helvetica" not in fonts, fonts
    xmp = re.search(rb"<x:xmpmeta.*?</x:xmpmeta>", contract, re.S)
    assert xmp is not None
    assert b"<pdfaid:part>2</pdfaid:part>" in xmp.group(0)
    assert b"<pdfaid:conformance>B</pdfaid:conformance>" in xmp.group(0)
    assert b"/S /GTS_PDFA1" in contract and b"/DestOutputProfile" in contract
    assert re.search(rb"/ID \[<[0-9A-F]{32}>", contract)

    await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN})
    await me.call("POST", "/code")
    code, _ = last_code(server)
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
    assert status == 200, body
    status, signed = await me.call("GET", "/signed.pdf")
    root = pem(await fetch(f"{server.url}/ca/root.crt"), tmp_path / "root.pem")
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    _, fonts = await asyncio.to_thread(run, "pdffonts", str(path))
    assert "Helvetica" not in fonts and all(
        line.split()[-5] == "yes" for line in fonts.splitlines()[2:] if line.strip()
    ), fonts
    data_dir = server.services.config.data_path
    await server.stop()
    await assert_valid_offline(path, root, (0, 183))

    # the CLI, against the stopped server's data directory
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "videoid", "signatures", "extend", "--force",
         "--data-dir", str(data_dir)],
        capture_output=True, timeout=300, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0 and "1 contract(s) extended" in output, output
    again = await start_server(server={"data_dir": str(data_dir)})
    versions = [
        o for o in await again.services.repo.objects_of(session_id) if o.kind == "signed_contract"
    ]
    assert len(versions) == 2
    _, extended = await again.services.objects.get(versions[-1].id)
    assert extended.startswith(signed) and len(extended) > len(signed)
    assert archive_state(extended).document_timestamps == 2
    entries = [e for e in await again.services.repo.audit_entries() if e.subject == session_id]
    actions = [e.action for e in entries]
    # the new version is evidence: the session is sealed again after it, and verifies
    assert actions[-2:] == ["signature_extended", "evidence_sealed"], actions
    seals = await again.services.evidence.seals(session_id)
    assert seals[-1].body["event"] == "signature_extended"
    verdict = await again.services.evidence.verify(session_id)
    assert verdict["ok"], verdict["problems"]
    status, body = await Customer(again, me.headers["Authorization"].split(" ", 1)[1]).call(
        "GET", "/signed.pdf"
    )
    assert body == extended  # the customer downloads the newest version
    await again.stop()
    path.write_bytes(extended)
    await assert_valid_offline(path, root, (0, 183))


# -- R17: the limits hold under concurrency ---------------------------------------------

PARALLEL = 50


async def test_parallel_pins_codes_and_puks_check_at_most_the_limit(
    database_url: str,
    start_server: StartServer,
    customer_video: Path,
    operator_video: Path,
) -> None:
    """R17, 50 requests at once on SQLite and PostgreSQL. With a wrong code, 49 wrong PINs
    and the right one get the same kind of answer (the code's), no PIN is checked and at
    most three codes are compared; with the right code and 50 wrong PINs at most three
    PINs are checked and the key is locked; 50 wrong PUKs check at most ten and block the
    key for good, and the right PUK is then refused."""
    server, invitation, me = await approved(
        start_server, customer_video, operator_video, database={"url": database_url}
    )
    repo, sid = server.services.repo, invitation.session_id
    serial = (await me.call("POST", "/certificate"))[1]["serial"]
    assert (await me.call("GET", "/contract"))[0] == 200
    puk = (await me.call("POST", "/pin", {"pin": PIN, "pin_again": PIN}))[1]["puk"]

    async def at_once(path: str, bodies: list[dict[str, str]]) -> list[tuple[int, str, str]]:
        answers = await asyncio.gather(*(me.call("POST", path, b) for b in bodies))
        return [(s, b.get("error", {}).get("code", "ok"), str(b)) for s, b in answers]

    def wrong_pins(n: int) -> list[str]:  # 6 digits, none trivial, none the PIN
        return [f"58{i:04d}" for i in range(1, 200) if f"58{i:04d}" != PIN][:n]

    async def pin_checks() -> int:
        return sum(
            1
            for e in await repo.audit_of(sid)
            if e["action"] == "signature_refused" and (e["details"] or {}).get("pin_checked")
        )

    # a wrong code: the right PIN among 49 wrong ones is not told apart, nor checked
    assert (await me.call("POST", "/code"))[0] == 200
    code, _ = last_code(server)
    wrong_code = f"{(int(code) + 1) % 10**6:06d}"
    bodies = [{"pin": p, "code": wrong_code} for p in wrong_pins(PARALLEL - 1)]
    bodies.insert(PARALLEL // 2, {"pin": PIN, "code": wrong_code})
    answers = await at_once("/sign", bodies)
    codes = [c for _, c, _ in answers]
    assert set(codes) <= {"otp_wrong", "otp_locked"}, answers
    right = answers[PARALLEL // 2]
    assert any(a[:2] == right[:2] for i, a in enumerate(answers) if i != PARALLEL // 2)
    assert codes.count("otp_wrong") <= 2  # "2 attempts left", "1 attempt left"
    stored = await repo.latest_code(sid, "signature")
    assert stored is not None and stored.attempts == 3 and stored.used_at is None
    state = await repo.pin_state(serial)
    assert state is not None and state["failures"] == 0 and await pin_checks() == 0

    # the right code, 50 wrong PINs: at most three checked, the key locked
    assert (await me.call("POST", "/code"))[0] == 200
    code, _ = last_code(server)
    answers = await at_once("/sign", [{"pin": p, "code": code} for p in wrong_pins(PARALLEL)])
    codes = [c for _, c, _ in answers]
    assert "ok" not in codes and set(codes) <= {"pin_wrong", "pin_locked", "otp_locked"}
    assert codes.count("pin_wrong") <= 2 and await pin_checks() == 3
    state = await repo.pin_state(serial)
    assert state is not None and state["failures"] == 3 and state["locked_at"] is not None
    assert (await me.call("GET"))[1]["pin_locked"] is True
    status, body = await me.call("POST", "/sign", {"pin": PIN, "code": code})
    assert body["error"]["code"] == "pin_locked", body

    # 50 wrong PUKs: at most ten checked, the key blocked for good
    new_pin = "583920"
    wrong_puks = [f"{(int(puk) + i) % 10**12:012d}" for i in range(1, PARALLEL + 1)]
    answers = await at_once(
        "/unblock", [{"puk": p, "pin": new_pin, "pin_again": new_pin} for p in wrong_puks]
    )
    codes = [c for _, c, _ in answers]
    assert set(codes) <= {"puk_wrong", "key_blocked"}, answers
    assert codes.count("puk_wrong") <= 9
    checked = [e for e in await repo.audit_of(sid) if e["action"] == "pin_unblock"]
    assert len(checked) == 10 and not any((e["details"] or {}).get("ok") for e in checked)
    state = await repo.pin_state(serial)
    assert state is not None and state["puk_failures"] == 10 and state["blocked_at"] is not None
    status, body = await me.call(
        "POST", "/unblock", {"puk": puk, "pin": new_pin, "pin_again": new_pin}
    )
    assert (status, body["error"]["code"]) == (403, "key_blocked"), body
    record = await repo.find_session(id=sid)
    assert record is not None and record.state == "certificate_requested"
    assert not [o for o in await repo.objects_of(sid) if o.kind == "signed_contract"]


async def test_parallel_call_codes_compare_at_most_the_limit(
    database_url: str,
    start_server: StartServer,
    customer_video: Path,
    operator_video: Path,
) -> None:
    """R17, on SQLite and PostgreSQL: in a real call, 50 wrong codes checked at once by
    the operator compare at most ``call.otp_attempts``; the code is then locked, even the
    right one."""
    from videoid.bots.signaling_client import ProtocolError

    from .test_live_identification import PHONE, live_call

    server = await start_server(live={"workers": 0}, database={"url": database_url})
    async with live_call(server, customer_video, operator_video, reads_codes=False) as call:
        await call.op.request("otp_send")
        code = server.services.sms.messages(PHONE)[-1]["text"].split("code is ")[1][:6]  # type: ignore[attr-defined]
        wrong = [f"{(int(code) + i) % 10**6:06d}" for i in range(1, PARALLEL + 1)]

        async def check(guess: str) -> str:
            try:
                await call.op.request("otp_check", {"code": guess})
            except ProtocolError as refused:
                return refused.code
            return "matched"

        answers = await asyncio.gather(*(check(g) for g in wrong))
        assert set(answers) <= {"otp_wrong", "otp_locked"}, answers
        assert answers.count("otp_wrong") <= 2
        stored = await server.services.repo.latest_code(call.session_id, "call_readback")
        assert stored is not None and stored.attempts == 3 and stored.used_at is None
        compared = [
            i for i in await server.services.repo.items(call.session_id, ["otp"])
            if i["data"].get("event") == "wrong"
        ]  # fmt: skip
        assert len(compared) == 3
        assert await check(code) == "otp_locked"
