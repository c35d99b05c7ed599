"""The operator's live tools through a real call: an in-process server, real Socket.IO
clients, real aiortc peers, a customer bot whose camera is a video of real photos, the
analysis in a real worker process (mediapipe, dlib). R5, R7, R8, R9, R10."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.face_video import make_face_video
from videoid.bots.media_client import ClientPeer
from videoid.bots.operator_bot import OperatorBot, answer_checklist, login
from videoid.bots.signaling_client import ProtocolError, SignalingClient

from .conftest import ASSETS, PASSWORD, PHOTOS, Server, StartServer

PHONE = "+393471234567"


@pytest.fixture(scope="session")
def turning_video() -> Path:
    """The same man looking slightly left and up (obama3), then turned to his right
    (obama2): a head turn to the right, over and over."""
    out = ASSETS / "turning.webm"
    if not out.exists():
        make_face_video([PHOTOS / "obama3.jpg", PHOTOS / "obama2.jpg"], out, seconds=6.0)
    return out


@pytest.fixture(scope="session")
def still_video() -> Path:
    """One photo, every frame the same: a replayed picture."""
    out = ASSETS / "still.webm"
    if not out.exists():
        make_face_video(PHOTOS / "obama.jpg", out, seconds=4.0, still=True)
    return out


@dataclass
class Call:
    server: Server
    session_id: str
    operator: OperatorBot
    operator_peer: ClientPeer
    customer: CustomerBot

    @property
    def op(self) -> SignalingClient:
        return self.operator.signaling

    async def until(self, event: str, check: Any, seconds: float = 20.0) -> dict[str, Any]:
        """The first ``event`` to the operator for which ``check`` holds."""
        deadline = time.monotonic() + seconds
        while True:
            payload = await self.op.next(event, max(0.1, deadline - time.monotonic()))
            if check(payload):
                return payload


@asynccontextmanager
async def live_call(
    server: Server,
    video: Path,
    operator_video: Path,
    name: str = "olga",
    reads_codes: bool = True,
    role: str = "operator",
) -> AsyncIterator[Call]:
    await server.operator(name, role=role)
    invitation = await server.invite(phone=PHONE)
    operator = OperatorBot(server.url, name, PASSWORD, video=operator_video)
    await operator.connect()
    await operator.set_presence("available")
    outbox = server.services.sms.path if reads_codes else None  # type: ignore[attr-defined]
    customer = CustomerBot(invitation.url, video, sms_outbox=outbox, phone=PHONE)
    await customer.connect()
    await customer.join_queue()
    session_id, peer = await operator.accept_next(30)
    await customer.wait_call(30)
    await customer.connect_media()
    try:
        yield Call(server, session_id, operator, peer, customer)
    finally:
        await peer.close()
        await customer.close()
        await operator.signaling.close()


async def seed_selfie(server: Server, session_id: str, photo: Path) -> None:
    """The selfie as onboarding stores it (encrypted object + step result)."""
    services = server.services
    now = services.clock.now()
    stored = await services.objects.put(session_id, "selfie", "image/jpeg", photo.read_bytes(), now)
    await services.repo.put_result(session_id, "selfie", {"object": stored.id}, now)


async def test_signals_challenges_snapshots_otp_chat_and_approval(
    start_server: StartServer, turning_video: Path, operator_video: Path
) -> None:
    server = await start_server(live={"challenge_seconds": 5.0})
    # the invitation does not exist yet: seed the selfie once the session does
    await server.operator("olga")
    invitation = await server.invite(phone=PHONE)
    await seed_selfie(server, invitation.session_id, PHOTOS / "obama.jpg")
    operator = OperatorBot(server.url, "olga", PASSWORD, video=operator_video)
    await operator.connect()
    await operator.set_presence("available")
    customer = CustomerBot(
        invitation.url,
        turning_video,
        sms_outbox=server.services.sms.path,
        phone=PHONE,  # type: ignore[attr-defined]
    )
    await customer.connect()
    await customer.join_queue()
    session_id, peer = await operator.accept_next(30)
    await customer.wait_call(30)
    await customer.connect_media()
    call = Call(server, session_id, operator, peer, customer)
    try:
        await run_the_call(call)
    finally:
        await peer.close()
        await customer.close()
        await operator.signaling.close()


async def run_the_call(call: Call) -> None:
    server, op = call.server, call.op
    # signals reach the operator: one face, compared with the selfie (same man)
    signals = await call.until(
        "signals", lambda s: s["faces"] == 1 and "selfie" in s["match"], seconds=30
    )
    assert signals["session_id"] == call.session_id
    assert signals["match"]["selfie"]["match"] is True
    assert signals["match"]["selfie"]["distance"] < 0.6
    face = signals["face"]
    assert 0.05 < face["box"][2] < 1 and 0.1 < face["ear"] < 0.5
    assert signals["quality"]["width"] == 640 and signals["quality"]["height"] == 480
    assert signals["quality"]["fps"] is not None and signals["quality"]["brightness"] > 50
    # the delay from the frame's arrival to its signals leaving the server
    assert 0 <= signals["sent_at"] - signals["frame_at"] < 5

    # the browser names a software camera: flagged (R7)
    await call.customer.signaling.request("camera", {"label": "OBS Virtual Camera"})
    flagged = await call.until("signals", lambda s: "virtual_camera" in s["flags"])
    assert flagged["injection"]["camera_label"] == "OBS Virtual Camera"

    # challenges: the video turns its head to the right; it never blinks
    started = await op.request("challenge", {"kinds": ["turn_right", "blink_twice"]})
    assert started["current"]["kind"] == "turn_right"
    assert started["pending"] == ["blink_twice"]
    shown = await call.customer.signaling.next("challenge", 5)
    assert shown["kind"] == "turn_right" and shown["seconds"] == 5
    done = await call.until("challenge", lambda c: len(c["done"]) == 2, seconds=30)
    results = {c["kind"]: c for c in done["done"]}
    assert results["turn_right"]["result"] == "passed"
    assert results["turn_right"]["evidence"]["yaw"] <= -15
    assert results["blink_twice"]["result"] == "failed"
    random_run = await op.request("challenge", {"random": 3})
    assert len(random_run["pending"]) == 2 and random_run["current"] is not None

    # a snapshot: the full-resolution frame, stored encrypted, served to the operator
    snap = await op.request("snapshot", {"kind": "face"})
    assert (snap["width"], snap["height"]) == (640, 480)
    stored, data = await server.services.objects.get(snap["object"])
    assert stored.session_id == call.session_id and stored.kind == "snapshot_face"
    assert Image.open(io.BytesIO(data)).size == (640, 480)
    raw = server.services.objects.files.path(stored.id).read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[:200] not in raw  # encrypted at rest
    async with (
        aiohttp.ClientSession(cookies={"videoid_login": call.operator.token}) as http,
        http.get(f"{server.url}/api/sessions/{call.session_id}/snapshots/{stored.id}") as r,
    ):
        assert r.status == 200 and r.content_type == "image/jpeg"
        assert await r.read() == data

    # "snapshot taken" passes only once a snapshot of that kind exists (issue 14, item 10)
    with pytest.raises(ProtocolError) as missing:
        await op.request("checklist_answer", {"item": "document_front", "answer": "passed"})
    assert missing.value.code == "snapshot_missing"
    front = await op.request("snapshot", {"kind": "document_front"})
    view = await op.request("checklist_answer", {"item": "document_front", "answer": "passed"})
    answered = next(i for i in view["items"] if i["id"] == "document_front")["answer"]
    assert answered["snapshot"] == front["object"]

    # chat both ways
    await call.customer.signaling.request("chat", {"text": "I cannot hear you"})
    heard = await call.until("chat", lambda m: m["from"] == "customer")
    assert heard["text"] == "I cannot hear you"
    await op.request("chat", {"text": "Please check your loudspeaker"})
    got = await call.customer.signaling.next("chat", 5)
    assert got == {**got, "from": "operator", "text": "Please check your loudspeaker"}

    # approval waits for the checklist
    with pytest.raises(ProtocolError) as early:
        await op.request(
            "decide",
            {
                "session_id": call.session_id,
                "outcome": "approved",
                "reason_code": "identity_verified",
            },
        )
    assert early.value.code == "checklist_incomplete"

    # OTP read-back through the SMS outbox: a wrong code first, then the customer's
    await op.request("otp_send")
    with pytest.raises(ProtocolError) as wrong:
        await op.request("otp_check", {"code": "000000"})
    # (one in a million: the code drawn could be 000000)
    assert wrong.value.code == "otp_wrong" and "2 attempts left" in wrong.value.message
    checklist = await call.operator.run_checklist(20)
    assert checklist["complete"] is True
    otp_item = next(i for i in checklist["items"] if i["kind"] == "otp")
    assert otp_item["answer"]["by"] == "system" and otp_item["answer"]["answer"] == "passed"
    messages = server.services.sms.messages(PHONE)  # type: ignore[attr-defined]
    assert len(messages) == 2 and "identification code" in messages[-1]["text"]

    view = await op.request("call_view")
    assert [e["event"] for e in view["otp"]] == ["sent", "wrong", "sent", "matched"]
    assert not any("code" in str(k) for e in view["otp"] for k in e)  # never the code
    # two messages, and each code read back by the customer in the chat
    # the face's, the document front's, and the back's the checklist's bot took
    kinds = [s["kind"] for s in view["snapshots"]]
    assert kinds == ["face", "document_front", "document_back"] and len(view["chat"]) == 4

    await op.request(
        "decide",
        {"session_id": call.session_id, "outcome": "approved", "reason_code": "identity_verified"},
    )
    outcome = await call.customer.signaling.next("outcome", 10)
    assert outcome["outcome"] == "approved"

    # the call's analysis is kept as evidence
    items = await server.services.repo.items(call.session_id, ["analysis"])
    summary = items[-1]["data"]
    assert summary["analysed_frames"] >= 10
    assert {c["kind"] for c in summary["challenges"]} >= {"turn_right", "blink_twice"}
    # no code in clear anywhere in the call's items
    for item in await server.services.repo.items(call.session_id):
        assert not any(
            m["text"].split("code is ")[1][:6] in str(item["data"])
            for m in messages
            if item["kind"] != "chat"
        )


async def test_a_replayed_picture_is_flagged(
    start_server: StartServer, still_video: Path, operator_video: Path
) -> None:
    server = await start_server(live={"analysis_fps": 8.0, "no_blink_seconds": 3.0})
    async with live_call(server, still_video, operator_video) as call:
        wanted = {"frames_frozen", "no_motion", "no_blink"}
        signals = await call.until("signals", lambda s: wanted <= set(s["flags"]), seconds=40)
        assert signals["injection"]["frozen"] >= 5
        assert signals["faces"] == 1 and signals["blinks"] == 0


async def test_bad_input_in_a_call(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server(call={"chat_per_minute": 5, "snapshots_per_minute": 2})
    async with live_call(server, customer_video, operator_video, reads_codes=False) as call:
        op, customer = call.op, call.customer.signaling
        await call.until("signals", lambda s: s["faces"] is not None, seconds=30)
        # a customer connection cannot challenge, decide, snapshot or send codes
        for event in ("challenge", "decide", "snapshot", "otp_send", "checklist_answer"):
            with pytest.raises(ProtocolError) as refused:
                await customer.request(event, {})
            assert refused.value.code == "unknown_event"
        # payloads are checked
        for event, payload, code in [
            ("challenge", {"kinds": ["juggle"]}, "invalid_challenge"),
            ("challenge", {}, "invalid_challenge"),
            ("snapshot", {"kind": "selfie_stick"}, "invalid_snapshot_kind"),
            ("checklist_answer", {"item": "nope", "answer": "passed"}, "checklist_item_unknown"),
            ("checklist_answer", {"item": "otp", "answer": "passed"}, "checklist_item_automatic"),
            ("otp_check", {"code": "12ab56"}, "invalid_code"),
            ("otp_check", {"code": "123456"}, "otp_not_sent"),
            ("decide", {"session_id": call.session_id, "outcome": "rejected",
                        "reason_code": "identity_verified"}, "invalid_reason"),
        ]:  # fmt: skip
            with pytest.raises(ProtocolError) as bad:
                await op.request(event, payload)
            assert bad.value.code == code, (event, payload)
        # a guessed code locks after three tries, even with the right one afterwards
        await op.request("otp_send")
        for _ in range(3):
            with pytest.raises(ProtocolError):
                await op.request("otp_check", {"code": "999999"})
        code = server.services.sms.messages(PHONE)[-1]["text"].split("code is ")[1][:6]  # type: ignore[attr-defined]
        with pytest.raises(ProtocolError) as locked:
            await op.request("otp_check", {"code": code})
        assert locked.value.code == "otp_locked"
        await op.request("otp_send")
        await op.request("otp_send")
        with pytest.raises(ProtocolError) as too_many:
            await op.request("otp_send")
        assert too_many.value.code == "otp_send_limit"
        # floods are limited
        for i in range(5):
            await customer.request("chat", {"text": f"hello {i}"})
        with pytest.raises(ProtocolError) as flood:
            await customer.request("chat", {"text": "hello again"})
        assert flood.value.code == "rate_limited"
        with pytest.raises(ProtocolError) as long:
            await customer.request("chat", {"text": "x" * 1001})
        assert long.value.code == "invalid_message"
        await op.request("snapshot", {"kind": "face"})
        await op.request("snapshot", {"kind": "document_front"})
        with pytest.raises(ProtocolError) as snaps:
            await op.request("snapshot", {"kind": "document_back"})
        assert snaps.value.code == "rate_limited"
        # nothing was lost: the two snapshots and the five messages are there
        view = await op.request("call_view")
        assert len(view["snapshots"]) == 2 and len(view["chat"]) == 5

        # a decision waits for the checklist, even a rejection: what could not be
        # checked is failed, on record
        reject = {"session_id": call.session_id, "outcome": "rejected",
                  "reason_code": "suspected_fraud"}  # fmt: skip
        with pytest.raises(ProtocolError) as early:
            await op.request("decide", reject)
        assert early.value.code == "checklist_incomplete"
        await answer_checklist(op, view["checklist"]["items"], otp="failed", others="failed")
        await op.request("decide", reject)
        # after the call: its tools answer that there is no call
        after = [
            ("snapshot", {"kind": "face"}),
            ("otp_send", {}),
            ("challenge", {"kinds": ["smile"]}),
            ("chat", {"text": "hi"}),
        ]
        for event, payload in after:
            with pytest.raises(ProtocolError) as ended:
                await op.request(event, payload)
            assert ended.value.code == "no_call", event
        with pytest.raises(ProtocolError) as late:
            await customer.request("chat", {"text": "are you there?"})
        assert late.value.code == "no_call"


async def test_a_dropped_customer_reconnects_to_the_same_operator(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    """R12: the customer's connection dies; the same operator keeps the call; the
    customer comes back (a new connection, a new peer connection); the gap is kept."""
    server = await start_server(call={"reconnect_seconds": 30.0})
    async with live_call(server, customer_video, operator_video) as call:
        await call.until("signals", lambda s: s["faces"] == 1, seconds=30)
        first_url = call.customer.server + "/join#" + call.customer._token
        # the connection dies (no goodbye from the media side)
        await call.customer.signaling.close()
        dropped = await call.op.next("customer_reconnecting", 10)
        assert dropped == {"session_id": call.session_id, "seconds": 30.0}
        assert call.server.services.center.operator_in_call(call.session_id) is not None

        again = CustomerBot(first_url, customer_video)
        try:
            session = await again.connect()
            assert session["state"] == "in_call" and "ice_servers" in session
            back = await call.op.next("customer_back", 10)
            assert back["resumed"] is True and back["seconds"] >= 0
            await again.connect_media()  # a new peer connection replaces the old one
            signals = await call.until(
                "signals", lambda s: s["frame_at"] > back["to"] + 0.5 and s["faces"] == 1
            )
            assert signals["session_id"] == call.session_id
            await call.operator.run_checklist(approving=False)
            await call.op.request(
                "decide",
                {"session_id": call.session_id, "outcome": "rejected",
                 "reason_code": "customer_withdrew"},
            )  # fmt: skip
            assert (await again.signaling.next("outcome", 10))["outcome"] == "rejected"
        finally:
            await again.close()
        gaps = await server.services.repo.items(call.session_id, ["gap"])
        assert len(gaps) == 1 and gaps[0]["data"]["resumed"] is True
    # one recording across the reconnect, the gap marked in it (R12, R13)
    await server.services.center.close()
    [recording] = await server.services.repo.recordings(call.session_id)
    assert recording["status"] == "complete", recording
    assert recording["summary"]["gaps"] == [gaps[0]["data"]]


async def test_a_customer_who_does_not_come_back_loses_the_call(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server(call={"reconnect_seconds": 1.0})
    async with live_call(server, customer_video, operator_video) as call:
        await call.customer.signaling.close()
        await call.op.next("customer_reconnecting", 10)
        ended = await call.op.next("call_ended", 10)
        assert ended["reason"] == "customer_left"
        gaps = await server.services.repo.items(call.session_id, ["gap"])
        assert [g["data"]["resumed"] for g in gaps] == [False]
        record = await server.services.repo.find_session(id=call.session_id)
        assert record is not None and record.state == "created"  # may queue again


async def test_four_eyes_review_of_a_suspended_session(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    """R15: a suspended case goes to the supervisors' queue; a supervisor sees what the
    operator saw and decides; the supervisor who handled the call cannot."""
    server = await start_server()
    await server.operator("sue", role="supervisor")
    async with live_call(server, customer_video, operator_video, "sam", role="supervisor") as call:
        await call.until("signals", lambda s: s["faces"] == 1, seconds=30)
        snap = await call.op.request("snapshot", {"kind": "document_front"})
        await call.op.request("chat", {"text": "Please hold the document still"})
        await call.op.request(
            "checklist_answer", {"item": "greeting", "answer": "passed", "note": "done"}
        )
        await call.operator.run_checklist(approving=False)
        await call.op.request(
            "decide",
            {"session_id": call.session_id, "outcome": "suspended",
             "reason_code": "document_unclear", "reason_text": "hologram hard to see"},
        )  # fmt: skip
        await call.op.next("reviews_changed", 5)

    async def as_user(name: str) -> aiohttp.ClientSession:
        http = aiohttp.ClientSession()
        token = await login(server.url, name, PASSWORD)
        http.headers["Authorization"] = f"Bearer {token}"  # type: ignore[index]
        return http

    sam, sue, olga = await as_user("sam"), await as_user("sue"), None
    try:
        await server.operator("olga2")
        olga = await as_user("olga2")
        async with olga.get(f"{server.url}/api/reviews") as r:
            assert r.status == 403  # operators do not review
        async with sue.get(f"{server.url}/api/reviews") as r:
            reviews = (await r.json())["reviews"]
        assert [(x["session_id"], x["operator"], x["reason_code"], x["own"]) for x in reviews] == [
            (call.session_id, "sam", "document_unclear", False)
        ]
        async with sue.get(f"{server.url}/api/reviews/{call.session_id}") as r:
            case = await r.json()
        # everything the operator saw
        assert case["call"]["snapshots"][0]["object"] == snap["object"]
        assert case["call"]["chat"][0]["text"] == "Please hold the document still"
        assert case["call"]["checklist"]["items"][0]["answer"]["note"] == "done"
        assert case["call"]["analysis"]["analysed_frames"] > 0
        assert case["decisions"][0]["reason_text"] == "hologram hard to see"
        async with sue.get(
            f"{server.url}/api/sessions/{call.session_id}/snapshots/{snap['object']}"
        ) as r:
            assert r.status == 200 and (await r.read())[:3] == b"\xff\xd8\xff"

        url = f"{server.url}/api/reviews/{call.session_id}/decision"
        async with sam.post(
            url, json={"outcome": "approved", "reason_code": "identity_verified"}
        ) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "own_session"
        for body, code in [
            ({"outcome": "suspended", "reason_code": "needs_review"}, "invalid_outcome"),
            ({"outcome": "approved", "reason_code": "suspected_fraud"}, "invalid_reason"),
        ]:
            async with sue.post(url, json=body) as r:
                assert (await r.json())["error"]["code"] == code
        async with sue.post(
            url, json={"outcome": "approved", "reason_code": "identity_verified",
                       "reason_text": "hologram visible on the tilted snapshot"}
        ) as r:  # fmt: skip
            assert r.status == 200 and (await r.json())["state"] == "approved"
        async with sue.post(
            url, json={"outcome": "rejected", "reason_code": "suspected_fraud"}
        ) as r:
            assert (await r.json())["error"]["code"] == "illegal_transition"  # decided once
        async with sue.get(f"{server.url}/api/reviews") as r:
            assert (await r.json())["reviews"] == []
    finally:
        for http in (sam, sue, olga):
            if http is not None:
                await http.close()
    decisions = await server.services.repo.decisions(call.session_id)
    assert [(d.outcome, d.reason_code) for d in decisions] == [
        ("suspended", "document_unclear"),
        ("approved", "identity_verified"),
    ]
    sue_id = (await server.services.repo.find_operator(username="sue")).id  # type: ignore[union-attr]
    assert decisions[1].operator_id == sue_id
