"""The server and docs/protocol.md agree (issue 15): one test per place where a client
written from the document alone had to guess, or found the server answering otherwise."""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import hashlib
import hmac
import importlib
import inspect
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from videoid.__main__ import build_parser
from videoid.bots.onboarding_client import OnboardingClient
from videoid.bots.signaling_client import ProtocolError, SignalingClient
from videoid.errors import ValidationError, VideoidError
from videoid.notify.mail import OutboxMail
from videoid.notify.sms import OutboxSms
from videoid.operator_console.checklist import ChecklistTemplate
from videoid.trust import pin
from videoid.trust.countries import mrz_code_known

from .conftest import PHOTOS, ROOT, Server, StartServer
from .test_queue_flow import customer, in_call, operator

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text("utf-8")
SAID = " ".join(PROTOCOL.split())
"""The document's text with its lines joined: what a sentence says, wherever it wraps."""
README = (ROOT / "README.md").read_text("utf-8")
FIELDS = {
    "surname": "Rossi",
    "given_names": "Ada Maria",
    "document_number": "AB1234567",
    "date_of_birth": "1980-01-31",
    "date_of_expiry": "2031-05-01",
    "nationality": "UTO",
    "sex": "F",
    "email": "ada@example.org",  # the invitation's: no proof asked
    "phone": "+393471234567",
}


async def call(
    server: Server,
    method: str,
    path: str,
    token: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one customer request, as a client sees them."""
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.request(method, server.url + path, json=json_body, data=data) as response,
    ):
        return response.status, await response.json()


def table_rows(heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in docs/protocol.md."""
    after = PROTOCOL[PROTOCOL.index(heading) :]
    rows = []
    for line in after.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])  # "\|" is a pipe in a cell
            rows.append([cell.strip() for cell in cells])
        elif rows:
            break
    return rows[2:]  # the header and its rule


# -- join_queue ---------------------------------------------------------------------------


async def test_join_queue_answers_assigned_after_the_offer_when_an_operator_is_free(
    server: Server,
) -> None:
    op, _ = await operator(server, "ann")
    await op.request("set_presence", {"status": "available"})
    cust, session_id = await customer(server)
    reply = await cust.request("join_queue")
    # the customer's view after the draw, and its events already there
    assert reply["state"] == "assigned"
    assert (reply["position"], reply["estimated_wait_seconds"]) == (1, 0.0)
    assert cust.drain("assigned") == [{"state": "assigned"}]
    assert (await op.next("assignment_offered", 5))["session_id"] == session_id
    # the document says so
    row = next(r for r in table_rows("Customer → server") if r[0] == "`join_queue`")
    assert '"state": "waiting" \\| "assigned"' in row[2] and "before this reply" in row[2]
    await asyncio.gather(cust.close(), op.close())


# -- the data step ------------------------------------------------------------------------


async def test_the_data_step_takes_the_documented_formats(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": ("data_confirmed",)})
    invitation = await server.invite()
    token = invitation.token

    async def refused(body: dict[str, Any]) -> tuple[str, str | None]:
        status, answer = await call(server, "POST", "/api/onboarding/data", token, json_body=body)
        assert status == 400, answer
        return answer["error"]["code"], answer["error"].get("field")

    for name in FIELDS:  # every field is required, each named when it is missing
        without = {k: v for k, v in FIELDS.items() if k != name}
        assert await refused(without) == ("field_required", name)
        assert await refused({**FIELDS, name: "  "}) == ("field_required", name)
    assert await refused({**FIELDS, "surname": 42}) == ("invalid_payload", "surname")
    for date in ("31/01/1980", "1980-1-31", "19800131", "1980-02-30"):
        assert await refused({**FIELDS, "date_of_birth": date}) == ("invalid_date", "date_of_birth")
    for sex in ("m", "<", "U", "male"):
        assert await refused({**FIELDS, "sex": sex}) == ("invalid_sex", "sex")
    # ISO 3166-1 alpha-3 as in ICAO 9303: no alpha-2, no private-use codes
    for code in ("IT", "QQQ", "ZZZ", "XX", "ITAL"):
        assert await refused({**FIELDS, "nationality": code}) == (
            "invalid_nationality",
            "nationality",
        )
    for code in ("ITA", "D", "GBD", "RKS", "XXA", "XXB", "XXC", "XXX", "UNO", "EUE", "UTO"):
        assert mrz_code_known(code), code
    status, answer = await call(
        server, "POST", "/api/onboarding/data", token, json_body={**FIELDS, "nationality": "xxa"}
    )
    assert (status, answer) == (200, {"ok": True})
    saved = (await server.services.repo.results(invitation.session_id))["personal_data"]
    assert saved["fields"]["nationality"] == "XXA"
    # the document lists every field with its format
    documented = {
        f.strip("`") for row in table_rows("**The data step's fields**") for f in row[0].split(", ")
    }
    assert documented == {*FIELDS, "tax_code", "codes"}


# -- error codes --------------------------------------------------------------------------


async def test_malformed_onboarding_bodies_are_invalid_payload(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": ("consented", "data_confirmed")})
    token = (await server.invite()).token
    for body in ({"language": "en", "accepted": [], "extra": 1}, {"language": "en", "accepted": 3}):
        status, answer = await call(
            server, "POST", "/api/onboarding/consent", token, json_body=body
        )
        assert (status, answer["error"]["code"]) == (400, "invalid_payload"), answer
    async with OnboardingClient(server.url, token) as client:
        await client.consent("en")
    for body in ({**FIELDS, "admin": "yes"}, {**FIELDS, "codes": ["123456"]}, [FIELDS]):
        status, answer = await call(server, "POST", "/api/onboarding/data", token, json_body=body)
        assert (status, answer["error"]["code"]) == (400, "invalid_payload"), answer
    # invalid_field is no more: a name of the wrong type is a malformed payload too
    status, answer = await call(
        server, "POST", "/api/onboarding/data", token, json_body={**FIELDS, "given_names": ["A"]}
    )
    assert answer["error"] == {
        "code": "invalid_payload",
        "message": "given_names: expected text",
        "field": "given_names",
    }
    assert "invalid_field" not in PROTOCOL
    assert not re.search(r'code="invalid_(request|field)"', _source("customer_client"))


def _source(package: str) -> str:
    return "".join(p.read_text("utf-8") for p in (ROOT / "videoid" / package).glob("*.py"))


async def test_a_missing_email_is_field_required(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": ("data_confirmed",)})
    token = (await server.invite()).token
    for body in (
        {k: v for k, v in FIELDS.items() if k != "email"},
        {**FIELDS, "email": ""},
        {**FIELDS, "email": None},
    ):
        status, answer = await call(server, "POST", "/api/onboarding/data", token, json_body=body)
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (
            400,
            "field_required",
            "email",
        )
    status, answer = await call(
        server, "POST", "/api/onboarding/data", token, json_body={**FIELDS, "email": "ada"}
    )
    assert answer["error"]["code"] == "invalid_email"


async def test_a_step_out_of_turn_is_409_whatever_its_body(start_server: StartServer) -> None:
    server = await start_server(
        onboarding={
            "required_steps": (
                "consented",
                "documents_captured",
                "data_confirmed",
                "selfie_taken",
                "av_tested",
            )
        }
    )
    token = (await server.invite()).token  # created: only the consent may come
    for path, body in (
        ("/api/onboarding/data", {}),
        ("/api/onboarding/data", {"surname": 1}),
        ("/api/onboarding/av-test", "yes"),
        ("/api/onboarding/connectivity", {"sdp": 1}),
    ):
        status, answer = await call(server, "POST", path, token, json_body=body)
        assert (status, answer["error"]["code"]) == (409, "step_not_allowed"), (path, answer)
    status, answer = await call(server, "POST", "/api/onboarding/data", token, data=b"{not json")
    assert (status, answer["error"]["code"]) == (409, "step_not_allowed")
    status, answer = await call(
        server, "POST", "/api/onboarding/document/side?country=QQQ&type=diploma", token, data=b"x"
    )
    assert (status, answer["error"]["code"]) == (409, "step_not_allowed")
    async with OnboardingClient(server.url, token) as client:
        await client.consent("en")
    status, answer = await call(server, "POST", "/api/onboarding/consent", token, json_body=[])
    assert (status, answer["error"]["code"]) == (409, "step_not_allowed")


async def test_an_empty_chat_is_invalid_message(server: Server) -> None:
    cust, op, _, _ = await in_call(server)
    for client in (op, cust):
        for text in ("", "   "):
            with pytest.raises(ProtocolError) as err:
                await client.request("chat", {"text": text})
            assert err.value.code == "invalid_message"
    assert (await op.request("chat", {"text": "hello"}))["text"] == "hello"
    await asyncio.gather(cust.close(), op.close())


async def test_accepting_a_session_never_offered_is_not_assigned(server: Server) -> None:
    op, _ = await operator(server, "ann")
    cust, session_id = await customer(server)
    await cust.request("join_queue")  # waiting; the operator is paused: offered to no one
    for never_offered in (session_id, str(uuid.uuid4())):
        with pytest.raises(ProtocolError) as err:
            await op.request("accept", {"session_id": never_offered})
        assert err.value.code == "not_assigned"
    row = next(r for r in table_rows("Operator → server") if r[0] == "`accept`")
    assert "session_not_found" not in row[3]
    await asyncio.gather(cust.close(), op.close())


async def test_consent_texts_in_an_unknown_language_are_refused(server: Server) -> None:
    token = (await server.invite()).token
    status, answer = await call(server, "GET", "/api/onboarding/consent?lang=xx", token)
    assert (status, answer["error"]["code"]) == (400, "invalid_language")
    for query, language in (("", "en"), ("?lang=it", "it")):
        status, answer = await call(server, "GET", f"/api/onboarding/consent{query}", token)
        assert status == 200 and {d["language"] for d in answer["documents"]} == {language}


# -- what the document did not say ----------------------------------------------------------


def test_the_checklist_kinds_are_the_documented_ones() -> None:
    rows = {r[0].strip("`"): r for r in table_rows("**Checklist items.**")}
    checklist = ChecklistTemplate.load().draw("passport", random.Random(1))
    kinds = {entry["kind"] for entry in checklist.entries}
    assert kinds == set(rows)  # the shipped script uses every kind the protocol shows
    for entry in checklist.entries:
        named = {f.strip("`") for f in rows[entry["kind"]][1].split(", ") if f}
        extra = set(entry) - {"id", "text", "kind", "mandatory", "snapshot"}
        assert extra == named, entry
    features = [e for e in checklist.entries if e["kind"] == "security_feature"]
    assert len(features) >= 3 and sum(e["optically_variable"] for e in features) >= 2
    otp = next(e for e in checklist.entries if e["kind"] == "otp")
    with pytest.raises(ValidationError) as err:
        checklist.answer(otp["id"], "passed", "", 0.0, "operator:1")
    assert err.value.code == "checklist_item_automatic"


async def test_the_connectivity_test_waits_for_the_clients_done(
    start_server: StartServer,
) -> None:
    server = await start_server(onboarding={"required_steps": ("av_tested",)})
    token = (await server.invite()).token
    pc = RTCPeerConnection()
    channel = pc.createDataChannel("probe")
    texts: list[dict[str, Any]] = []
    binary: list[bytes] = []
    result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    upload = asyncio.Event()
    chunks, size = 20, 16384

    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        if isinstance(message, bytes):
            binary.append(message)
            return
        msg = json.loads(message)
        texts.append(msg)
        if msg["type"] == "ping":
            channel.send(json.dumps({"type": "pong", "seq": msg["seq"], "t": msg["t"]}))
        elif msg["type"] == "upload":
            upload.set()
        elif msg["type"] == "result":
            result.set_result(msg)

    try:
        await pc.setLocalDescription(await pc.createOffer())
        status, answer = await call(
            server,
            "POST",
            "/api/onboarding/connectivity",
            token,
            json_body={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        assert status == 200, answer
        await pc.setRemoteDescription(RTCSessionDescription(**answer["answer"]))
        await asyncio.wait_for(upload.wait(), 15)
        assert [m["seq"] for m in texts if m["type"] == "ping"] == [0, 1, 2, 3, 4]
        for _ in range(chunks):
            channel.send(bytes(size))  # binary: counted, not read
            await asyncio.sleep(0.02)
        channel.send("not json")  # ignored
        await asyncio.sleep(1.5)
        assert not result.done()  # the server does not end the upload: the client does
        channel.send(json.dumps({"type": "done"}))
        measured = await asyncio.wait_for(result, 10)
        assert not binary  # the server's messages are text, one JSON object each
        assert measured["bytes_received"] == chunks * size
        assert measured["pings_answered"] == 5 and measured["passed"] is True
    finally:
        await pc.close()
    assert '**the client** sends `{"type": "done"}`' in SAID


async def test_the_outboxes_write_one_json_object_per_line(tmp_path: Path) -> None:
    sms, mail = OutboxSms(tmp_path / "sms.jsonl"), OutboxMail(tmp_path / "mail.jsonl")
    await sms.send("+393471234567", "Code 123456 to sign (ref. 1234abcd). Città")
    await sms.send("+393470000000", "Your identification code is 654321.")
    await mail.send("ada@example.org", "Subject", "Code 111222 confirms this address.")
    sms_lines = (tmp_path / "sms.jsonl").read_bytes().split(b"\n")
    assert sms_lines[-1] == b"" and len(sms_lines) == 3  # a newline after each
    records = [json.loads(line) for line in sms_lines[:-1]]
    assert [set(r) for r in records] == [{"id", "to", "text"}] * 2
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["id"]) for r in records)
    assert b"\\u00e0" in sms_lines[0]  # ASCII only
    [letter] = [json.loads(line) for line in (tmp_path / "mail.jsonl").read_text().splitlines()]
    assert set(letter) == {"id", "to", "subject", "text"}
    # the code is the first word of six digits, as documented
    first = [re.findall(r"\b\d{6}\b", r["text"])[0] for r in (*records, letter)]
    assert first == ["123456", "654321", "111222"]
    assert '`DATA_DIR/outbox/sms.jsonl`: `{"id", "to", "text"}`' in SAID
    assert '`DATA_DIR/outbox/mail.jsonl`: `{"id", "to", "subject", "text"}`' in SAID


SIGNING_MODULES = (
    "videoid.trust.signing_flow",
    "videoid.trust.pin",
    "videoid.notify.codes",
    "videoid.trust.customer_http",
)


def _raised(module_name: str) -> dict[str, int]:
    """Every error code ``module_name`` raises with an explicit ``code=`` (or names as
    a class's own code), with the HTTP status of the class it raises it with."""
    module = importlib.import_module(module_name)
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name)
            if issubclass(cls, VideoidError) and "code" in vars(cls):
                found[cls.code] = cls.status
        if not isinstance(node, ast.Call):
            continue
        code = next(
            (
                k.value.value
                for k in node.keywords
                if k.arg == "code" and isinstance(k.value, ast.Constant)
            ),
            None,
        )
        if code is None:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        cls = getattr(module, name)
        assert issubclass(cls, VideoidError), (module_name, name)
        found[code] = cls.status
    return found


def test_each_signing_error_has_its_documented_status() -> None:
    documented: dict[str, set[int]] = {}
    for status, codes in table_rows("The HTTP status of each error of these endpoints"):
        for code in re.findall(r"`([a-z_]+)`", codes):
            documented.setdefault(code, set()).update(int(s) for s in status.split(", "))
    raised: dict[str, int] = {}
    for name in SIGNING_MODULES:
        raised.update(_raised(name))
    raised.pop("signing_error")  # the class's default, never raised as such
    assert raised.keys() <= documented.keys(), sorted(raised.keys() - documented.keys())
    for code, status in raised.items():
        assert status in documented[code], (code, status, documented[code])
    assert (
        "attempts_left" in pin.wrong_pin(1).to_dict()
        and "attempts_left" in pin.wrong_puk(1).to_dict()
    )


async def test_every_onboarding_422_is_one_error_shape(start_server: StartServer) -> None:
    server = await start_server(
        onboarding={"required_steps": ("consented", "documents_captured"), "max_attempts": 3}
    )
    token = (await server.invite()).token
    async with OnboardingClient(server.url, token) as client:
        await client.consent("en")
        path = "/api/onboarding/document/front?country=UTO&type=passport"
        status, pdf = await call(server, "POST", path, token, data=b"%PDF-1.4\n" + bytes(5000))
        face = (PHOTOS / "obama.jpg").read_bytes()  # no zone: mrz_not_found
        status2, rejected = await call(server, "POST", path, token, data=face)
        assert (status, status2) == (422, 422)
        assert pdf == {
            "error": {
                "code": "unsupported_file_type",
                "message": "only photos in JPEG or PNG format are accepted",
                "attempts_left": 2,
            }
        }
        assert set(rejected) == {"error"}
        assert rejected["error"]["code"] == "photo_rejected"
        assert rejected["error"]["problems"] == ["mrz_not_found"]
        assert rejected["error"]["attempts_left"] == 1
        # the bots see the page's answer
        assert await client.document("front", face, country="UTO", doc_type="passport") == {
            "accepted": False,
            "problems": ["mrz_not_found"],
            "attempts_left": 0,
        }


async def test_attempts_left_is_a_field(start_server: StartServer) -> None:
    server = await start_server(onboarding={"required_steps": ("data_confirmed",)})
    token = (await server.invite()).token
    changed = {**FIELDS, "email": "other@example.org"}
    status, answer = await call(server, "POST", "/api/onboarding/data", token, json_body=changed)
    assert status == 202 and answer["verify"] == ["email"]
    wrong = {**changed, "codes": {"email": "000000"}}  # one in a million: the right one
    status, answer = await call(server, "POST", "/api/onboarding/data", token, json_body=wrong)
    assert status == 422 and answer["error"]["code"] == "otp_wrong"
    assert (
        answer["error"]["attempts_left"]
        == server.services.config.onboarding.contact_code_attempts - 1
    )
    assert answer["error"]["field"] == "email_code"
    # the same in an acknowledgement: the operator's read-back
    cust, op, _, _ = await in_call(await start_server())
    await op.request("otp_send")
    reply = await op.sio.call("otp_check", {"code": "000000"}, namespace="/operator")
    assert reply["error"]["code"] == "otp_wrong" and reply["error"]["attempts_left"] == 2
    await asyncio.gather(cust.close(), op.close())


async def test_a_second_customer_connection_takes_over_only_in_a_call(server: Server) -> None:
    # outside a call: refused while the first is connected
    invitation = await server.invite("bob@example.org", "+393470000001")
    alone = SignalingClient(server.url, "/customer")
    await alone.connect({"token": invitation.token})
    await alone.next("session", 5)
    other = SignalingClient(server.url, "/customer")
    with pytest.raises(ProtocolError) as err:
        await other.connect({"token": invitation.token})
    assert err.value.code == "session_in_use"
    # in a call: the new connection takes over, the old one is disconnected
    cust, op, session_id, token = await in_call(server)
    second = SignalingClient(server.url, "/customer")
    await second.connect({"token": token})
    session = await second.next("session", 5)
    assert session["state"] == "in_call" and session["session_id"] == session_id
    assert "ice_servers" in session and "operator" in session
    back = await op.next("customer_back", 5)
    assert back["session_id"] == session_id and back["resumed"] is True
    for _ in range(50):
        if not cust.sio.namespaces:
            break
        await asyncio.sleep(0.1)
    assert not cust.sio.namespaces  # the older connection was closed by the server
    assert "**takes over**" in SAID
    await asyncio.gather(alone.close(), second.close(), cust.close(), op.close())


async def test_ice_servers_carry_time_limited_turn_credentials(start_server: StartServer) -> None:
    stun, turn, secret = "stun:stun.example.org:3478", "turn:turn.example.org:3478", "s3cret"
    server = await start_server(
        media={
            "ice_servers": (stun,),
            "turn_urls": (turn + "?transport=udp", "turns:turn.example.org:5349"),
            "turn_secret": secret,
            "turn_ttl_seconds": 600.0,
        }
    )
    invitation = await server.invite()
    before = int(server.services.clock.now())
    status, overview = await call(server, "GET", "/api/onboarding", invitation.token)
    assert status == 200
    first, relay = overview["ice_servers"]
    assert first == {"urls": [stun]}
    assert set(relay) == {"urls", "username", "credential"}
    assert relay["urls"] == [turn + "?transport=udp", "turns:turn.example.org:5349"]
    expiry, _, subject = relay["username"].partition(":")
    assert subject == invitation.session_id and before + 600 <= int(expiry) <= before + 602
    digest = hmac.new(secret.encode(), relay["username"].encode(), hashlib.sha1).digest()
    assert relay["credential"] == base64.b64encode(digest).decode()
    assert overview["ice_transport_policy"] == "all"
    # the document gives that shape, credentials included
    assert "one entry holding every TURN URL with its credentials" in SAID
    assert '"username": "1767225600:SUBJECT", "credential": "BASE64"' in SAID


def test_the_cli_takes_the_documented_options() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = subcommands.choices["serve"]
    options = {o for a in serve._actions for o in a.option_strings} - {"-h", "--help"}
    row = next(line for line in README.splitlines() if line.startswith("| `videoid serve"))
    assert set(re.findall(r"--[a-z-]+", row.split(" | ")[0])) == options
    args = parser.parse_args(["serve", "--data-dir", "d", "--port", "8081"])
    assert (args.data_dir, args.port) == ("d", 8081)
    assert "`videoid serve --port 8080 --data-dir DIR`" in SAID
