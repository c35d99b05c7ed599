"""The onboarding steps through the real server: HTTP, the analysis pool, encrypted
storage, the session state machine; then the operator's view of what they produced.
R1 (consent first), R2 (quality, capped retries), R3 (MRZ checks flagged), R4 (one
person, one contact)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import aiohttp
import pytest

from videoid.bench.documents import (
    SyntheticDocument,
    make_document,
    phone_photo,
    portrait_from,
    render,
)
from videoid.bots.onboarding_client import OnboardingClient, OnboardingError
from videoid.bots.operator_bot import login
from videoid.bots.signaling_client import ProtocolError, SignalingClient
from videoid.documents.mrz import mrz_name

from .conftest import PASSWORD, PHOTOS, Server, StartServer

ALL_STEPS = ("consented", "documents_captured", "data_confirmed", "selfie_taken", "av_tested")
AV_OK = {"camera": True, "microphone": True, "speaker": True}


@pytest.fixture(scope="module")
def passport() -> tuple[SyntheticDocument, bytes]:
    rng = random.Random(7)
    doc = make_document(rng, "TD3")
    page, _ = render(doc, portrait_from(PHOTOS / "obama.jpg"), rng)
    return doc, phone_photo(page, rng)


@pytest.fixture(scope="module")
def id_card() -> tuple[SyntheticDocument, bytes, bytes]:
    rng = random.Random(8)
    doc = make_document(rng, "TD1")
    back, front = render(doc, portrait_from(PHOTOS / "biden.jpg"), rng)
    assert front is not None
    return doc, phone_photo(front, rng), phone_photo(back, rng)


async def onboarding_server(start_server: StartServer, **onboarding: Any) -> Server:
    return await start_server(onboarding={"required_steps": ALL_STEPS, **onboarding})


def fields_from(doc: SyntheticDocument, **changes: str) -> dict[str, str]:
    fields = {
        "surname": doc.surname,
        "given_names": doc.given_names,
        "document_number": doc.document_number,
        "date_of_birth": doc.date_of_birth.isoformat(),
        "date_of_expiry": doc.date_of_expiry.isoformat(),
        "nationality": doc.nationality,
        "sex": doc.sex,
        "email": "ada@example.org",
        "phone": "+393471234567",
    }
    fields.update(changes)
    return fields


async def test_the_whole_onboarding_then_the_queue_and_the_operator_sees_it(
    start_server: StartServer, passport: tuple[SyntheticDocument, bytes]
) -> None:
    doc, photo = passport
    server = await onboarding_server(start_server)
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        overview = await client.overview()
        assert overview["state"] == "created" and overview["required_steps"] == list(ALL_STEPS)
        # R1: nothing is captured before consent
        with pytest.raises(OnboardingError) as err:
            await client.document("front", photo, country="UTO", doc_type="passport")
        assert err.value.code == "step_not_allowed"
        texts = await client.consent_texts("it")
        assert {t["document"] for t in texts} == {"privacy", "terms"}
        assert "registrata" in texts[0]["text"] or "registrata" in texts[1]["text"]
        await client.consent("it")
        # the document
        result = await client.document("front", photo, country="UTO", doc_type="passport")
        assert result["accepted"], result
        await client.document_done()
        prefill = (await client.overview())["prefill"]
        assert prefill["document_number"] == doc.document_number
        # the zone's spelling (Müller is MUELLER there); the customer may restore accents
        assert prefill["surname"] == mrz_name(doc.surname).replace("<", " ")
        # the customer corrects the given names as printed (accents are theirs to add)
        await client.confirm_data(fields_from(doc, given_names=doc.given_names + " Maria"))
        # the selfie: a head turned away is refused, another photo of the person is not
        turned = await client.selfie((PHOTOS / "obama2.jpg").read_bytes())
        assert turned["accepted"] is False and turned["problems"] == ["face_not_frontal"]
        assert (await client.selfie((PHOTOS / "obama3.jpg").read_bytes())) == {"accepted": True}
        # the A/V test needs the connectivity test through the server first
        with pytest.raises(OnboardingError) as err:
            await client.av_test(AV_OK)
        assert err.value.code == "connectivity_test_missing"
        probe = await client.connectivity_test()
        assert probe["passed"] is True and probe["pings_answered"] == 5
        assert probe["rtt_ms"] < 800 and probe["bitrate_kbps"] > 300
        await client.av_test(AV_OK)
        assert (await client.overview())["state"] == "av_tested"

    # now, and only now, the queue
    customer = SignalingClient(server.url, "/customer")
    await customer.connect({"token": invitation.token})
    assert (await customer.request("join_queue"))["state"] == "waiting"

    # an operator takes the call and sees everything
    await server.operator("olga")
    token = await login(server.url, "olga", PASSWORD)
    operator = SignalingClient(server.url, "/operator")
    await operator.connect({"token": token})
    await operator.request("set_presence", {"status": "available"})
    offered = await operator.next("assignment_offered", 5)
    await operator.request("accept", {"session_id": offered["session_id"]})
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        base = f"{server.url}/api/sessions/{invitation.session_id}"
        async with http.get(f"{base}/onboarding") as response:
            assert response.status == 200
            view = await response.json()
        assert view["document"]["mrz"]["document_number"] == doc.document_number
        assert view["document"]["mrz"]["checks_ok"] is True
        assert {c["name"] for c in view["document"]["mrz"]["checks"]} >= {
            "composite",
            "date_of_birth",
        }
        assert view["edited"] == ["given_names"] and "fields_edited" in view["flags"]
        assert (
            view["selfie"]["match"]["match"] is True and view["selfie"]["match"]["distance"] < 0.6
        )
        assert view["av_test"]["connectivity"]["rtt_ms"] == probe["rtt_ms"]
        assert [c["document"] for c in view["consents"]] == ["privacy", "terms"]
        assert view["consents"][0]["language"] == "it" and view["consents"][0]["client_address"]
        assert sorted(view["document"]["images"]) == ["front", "portrait"]
        for name in ("front", "portrait", "selfie"):
            async with http.get(f"{base}/images/{name}") as response:
                assert response.status == 200 and response.content_type == "image/jpeg"
                assert response.headers["Cache-Control"] == "no-store"
                assert (await response.read())[:3] == b"\xff\xd8\xff"
    # the images are encrypted at rest: no JPEG in the object directory
    objects = server.services.objects.files.root
    stored = list(objects.rglob("*.bin"))
    assert len(stored) == 3
    assert all(b"\xff\xd8\xff" not in p.read_bytes()[:64] for p in stored)
    await customer.close()
    await operator.close()


async def test_an_id_card_needs_both_sides_and_flags_a_face_mismatch(
    start_server: StartServer, id_card: tuple[SyntheticDocument, bytes, bytes]
) -> None:
    doc, front, back = id_card
    server = await onboarding_server(start_server)
    invitation = await server.invite(email="bo@example.org", phone="+48601234567")
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("pl")
        assert (await client.document("back", back, country="UTO", doc_type="id_card"))["accepted"]
        with pytest.raises(OnboardingError) as err:
            await client.document_done()
        assert err.value.code == "document_side_missing"
        assert (await client.document("front", front, country="UTO", doc_type="id_card"))[
            "accepted"
        ]
        await client.document_done()
        await client.confirm_data(fields_from(doc, email="bo@example.org", phone="+48601234567"))
        # someone else's face: accepted as a photo, flagged to the operator only
        assert (await client.selfie((PHOTOS / "obama.jpg").read_bytes())) == {"accepted": True}
    view = await server.services.onboarding.operator_view(invitation.session_id)
    assert view["selfie"]["match"]["match"] is False
    assert "face_mismatch" in view["flags"]
    assert view["edited"] == []


async def test_steps_out_of_order_twice_or_skipped_are_refused_and_nothing_is_lost(
    start_server: StartServer, passport: tuple[SyntheticDocument, bytes]
) -> None:
    doc, photo = passport
    server = await onboarding_server(start_server)
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        for call in (
            client.document_done(),
            client.confirm_data(fields_from(doc)),
            client.av_test(AV_OK),
        ):
            with pytest.raises(OnboardingError) as err:
                await call
            assert err.value.code == "step_not_allowed"
        await client.consent("en")
        with pytest.raises(OnboardingError) as err:
            await client.consent("en")
        assert err.value.code == "step_not_allowed"
        with pytest.raises(OnboardingError) as err:
            await client.selfie((PHOTOS / "obama2.jpg").read_bytes())
        assert err.value.code == "step_not_allowed"
        assert (await client.document("front", photo, country="UTO", doc_type="passport"))[
            "accepted"
        ]
        await client.document_done()
        with pytest.raises(OnboardingError) as err:
            await client.document("front", photo, country="UTO", doc_type="passport")
        assert err.value.code == "step_not_allowed"
        # the queue cannot be joined before the last required step
        customer = SignalingClient(server.url, "/customer")
        await customer.connect({"token": invitation.token})
        with pytest.raises(ProtocolError) as refused:
            await customer.request("join_queue")
        assert refused.value.code == "illegal_transition"
        await customer.close()
        overview = await client.overview()
        assert overview["state"] == "documents_captured" and overview["document"]["captured"] == [
            "front"
        ]
    consents = await server.services.repo.consents(invitation.session_id)
    assert len(consents) == 2  # one consent, not two


async def test_bad_files_and_fields_get_clear_codes_and_retries_are_capped(
    start_server: StartServer, passport: tuple[SyntheticDocument, bytes]
) -> None:
    doc, photo = passport
    server = await onboarding_server(start_server, max_attempts=3)
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("ro")
        pdf = b"%PDF-1.4\n" + b"0" * 5000
        with pytest.raises(OnboardingError) as err:
            await client.document("front", pdf, country="UTO", doc_type="passport")
        assert err.value.code == "unsupported_file_type" and err.value.status == 422
        for country, kind, code in (
            ("XXX", "passport", "invalid_country"),
            ("UTO", "diploma", "invalid_document_type"),
        ):
            with pytest.raises(OnboardingError) as err:
                await client.document("front", photo, country=country, doc_type=kind)
            assert err.value.code == code
        with pytest.raises(OnboardingError) as err:
            await client.document("back", photo, country="UTO", doc_type="passport")
        assert err.value.code == "invalid_side"
        face = (PHOTOS / "obama.jpg").read_bytes()
        result = await client.document("front", face, country="UTO", doc_type="passport")
        assert result["accepted"] is False and result["problems"] == ["mrz_not_found"]
        assert result["attempts_left"] == 1
        assert (await client.document("front", photo, country="UTO", doc_type="passport"))[
            "accepted"
        ]
        with pytest.raises(OnboardingError) as err:  # the cap holds, whatever is sent
            await client.document("front", photo, country="UTO", doc_type="passport")
        assert err.value.code == "too_many_attempts" and err.value.status == 429
        await client.document_done()
        for changes, code in (
            ({"surname": "Иванов"}, "invalid_script"),
            ({"given_names": "A" * 65}, "field_too_long"),
            ({"date_of_birth": "1990-02-30"}, "invalid_date"),
            ({"email": "not-an-address"}, "invalid_email"),
            ({"phone": "0123"}, "invalid_phone"),
            ({"nationality": "ITA", "tax_code": "RSSMRA85T10A562T"}, "invalid_tax_code"),
            ({"nationality": "ITA"}, "invalid_tax_code"),
        ):
            with pytest.raises(OnboardingError) as err:
                await client.confirm_data(fields_from(doc, **changes))
            assert err.value.code == code, changes
        with pytest.raises(OnboardingError) as err:
            await client.confirm_data({**fields_from(doc), "admin": "yes"})
        assert err.value.code == "invalid_payload"
        # an Italian with a valid tax code goes through
        await client.confirm_data(fields_from(doc, nationality="ITA", tax_code="RSSMRA85T10A562S"))


def outbox_code(server: Server, to: str) -> str:
    """The last code the development outboxes (SMS and e-mail) hold for ``to``."""
    outbox = server.services.config.data_path / "outbox"
    found = ""
    for name in ("sms.jsonl", "mail.jsonl"):
        path = outbox / name
        if not path.exists():
            continue
        for line in path.read_text("utf-8").splitlines():
            message = json.loads(line)
            if message["to"] == to:
                match = re.search(r"\b(\d{6})\b", message["text"])
                assert match is not None
                found = match.group(1)
    assert found, f"no code sent to {to}"
    return found


async def test_a_contact_of_another_person_stops_the_flow(
    start_server: StartServer, database_url: str, passport: tuple[SyntheticDocument, bytes]
) -> None:
    """R4: one person, one contact; a changed contact is judged only after its proof."""
    doc, photo = passport
    server = await start_server(database_url, onboarding={"required_steps": ALL_STEPS})

    async def until_data(email: str, phone: str) -> OnboardingClient:
        invitation = await server.invite(email=email, phone=phone)
        client = OnboardingClient(server.url, invitation.token)
        await client.consent("en")
        assert (await client.document("front", photo, country="UTO", doc_type="passport"))[
            "accepted"
        ]
        await client.document_done()
        return client

    first = await until_data("ada@example.org", "+393471234567")
    await first.confirm_data(fields_from(doc))
    await first.close()
    # another person (other name and birth date) invited with the same e-mail: the
    # provider typed it, the customer did not choose it, so the verdict comes at once
    second = await until_data("ada@example.org", "+393479999999")
    bianchi = {"surname": "Bianchi", "date_of_birth": "1970-01-01"}
    with pytest.raises(OnboardingError) as err:
        await second.confirm_data(fields_from(doc, **bianchi, phone="+393479999999"))
    assert err.value.code == "email_in_use"
    # a number of their choosing that another customer has: first its proof
    changed = fields_from(doc, **bianchi, email="b@example.org")
    pending = await second.confirm_data(changed)
    assert pending["ok"] is False and pending["verify"] == ["email", "phone"]
    codes = {"email": outbox_code(server, "b@example.org"), "phone": ""}
    codes["phone"] = outbox_code(server, "+393471234567")
    with pytest.raises(OnboardingError) as err:
        await second.confirm_data({**changed, "codes": codes})
    assert err.value.code == "phone_in_use"
    # with contacts of their own, proven, they go on
    own: dict[str, Any] = fields_from(doc, **bianchi, email="b@example.org", phone="+393479999999")
    assert (await second.confirm_data(own))["verify"] == ["email"]
    assert (await second.confirm_data(own))["verify"] == ["email"]  # sent again
    own["codes"] = {"email": outbox_code(server, "b@example.org")}
    assert await second.confirm_data(own) == {"ok": True}
    await second.close()
    # the same person again (a second identification) may use their own contacts
    third = await until_data("ada@example.org", "+393471234567")
    await third.confirm_data(fields_from(doc))
    await third.close()


async def test_a_changed_contact_gets_the_same_answer_taken_or_free_until_proven(
    start_server: StartServer, database_url: str, passport: tuple[SyntheticDocument, bytes]
) -> None:
    """Issue 14, item 6: the data step does not tell who is a customer. A contact the
    customer types is judged only after the code sent to it comes back; the codes'
    tries are consumed atomically (parallel wrong codes check at most the limit), and
    the codes sent are limited."""
    doc, photo = passport
    server = await start_server(database_url, onboarding={"required_steps": ALL_STEPS})
    owner = await server.invite(email="taken@example.org", phone="+393470000001")
    async with OnboardingClient(server.url, owner.token) as client:
        await client.consent("en")
        await client.document("front", photo, country="UTO", doc_type="passport")
        await client.document_done()
        await client.confirm_data(
            fields_from(doc, email="taken@example.org", phone="+393470000001")
        )
    invitation = await server.invite(email="mine@example.org", phone="+393470000002")
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("en")
        await client.document("front", photo, country="UTO", doc_type="passport")
        await client.document_done()
        other = {"surname": "Rossi", "date_of_birth": "1971-03-04", "phone": "+393470000002"}
        answers = []
        for email in ("taken@example.org", "free@example.org"):
            answer = await client._call(
                "POST", "/api/onboarding/data", json=fields_from(doc, **other, email=email)
            )
            answers.append({k: v for k, v in answer.items() if k not in ("sent_to", "expires_at")})
        assert answers[0] == answers[1] == {"ok": False, "verify": ["email"]}
        assert (await client.overview())["state"] == "documents_captured"  # nothing saved
        # 30 wrong codes at once: at most the 3 tries are compared, the rest refused
        right = outbox_code(server, "free@example.org")
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        body: dict[str, Any] = {
            **fields_from(doc, **other, email="free@example.org"),
            "codes": {"email": wrong},
        }

        async def attempt() -> str:
            try:
                await client.confirm_data(body)
            except OnboardingError as err:
                return err.code
            return "accepted"

        results = await asyncio.gather(*(attempt() for _ in range(30)))
        assert results.count("otp_wrong") + results.count("otp_locked") == 30, results
        assert results.count("otp_wrong") <= 3, results
        body["codes"] = {"email": right}
        with pytest.raises(OnboardingError) as err:  # too late: that code is locked
            await client.confirm_data(body)
        assert err.value.code == "otp_locked"
        # new codes, but not without end (the first and the one above were two)
        del body["codes"]
        assert (await client.confirm_data(body))["verify"] == ["email"]
        with pytest.raises(OnboardingError) as err:
            await client.confirm_data(body)
        assert err.value.code == "otp_send_limit" and err.value.status == 429
        # the proof of the free one: accepted (of a taken one: in use, test above)
        body["codes"] = {"email": outbox_code(server, "free@example.org")}
        assert await client.confirm_data(body) == {"ok": True}
        assert (await client.overview())["state"] == "data_confirmed"


async def test_parallel_requests_send_at_most_the_contact_codes_allowed(
    start_server: StartServer, database_url: str, passport: tuple[SyntheticDocument, bytes]
) -> None:
    """Each contact code sent is taken in the database before it is made: 20 data steps
    at once with a new number send at most ``contact_code_sends`` SMS."""
    doc, photo = passport
    server = await start_server(database_url, onboarding={"required_steps": ALL_STEPS})
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("en")
        await client.document("front", photo, country="UTO", doc_type="passport")
        await client.document_done()
        body = fields_from(doc, phone="+393475550000")

        async def send() -> str:
            try:
                return str((await client.confirm_data(body))["verify"])
            except OnboardingError as err:
                return err.code

        answers = await asyncio.gather(*(send() for _ in range(20)))
    limit = server.services.config.onboarding.contact_code_sends
    assert answers.count("['phone']") == limit, answers
    assert answers.count("otp_send_limit") == 20 - limit, answers
    sms = server.services.config.data_path / "outbox" / "sms.jsonl"
    sent = [json.loads(line) for line in sms.read_text("utf-8").splitlines()]
    assert [m["to"] for m in sent] == ["+393475550000"] * limit


async def test_an_operator_cannot_see_a_session_not_assigned_to_them(
    start_server: StartServer,
) -> None:
    server = await onboarding_server(start_server)
    invitation = await server.invite()
    await server.operator("olga")
    token = await login(server.url, "olga", PASSWORD)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{server.url}/api/sessions/{invitation.session_id}/onboarding") as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        async with http.get(f"{server.url}/api/sessions/{invitation.session_id}/images/front") as r:
            assert r.status == 403
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/onboarding") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "invitation_invalid"


async def test_parallel_uploads_of_one_session_are_analysed_one_at_a_time(
    start_server: StartServer, passport: tuple[SyntheticDocument, bytes]
) -> None:
    """R2 (issue 14): 30 photos of one session sent at once: one is analysed, the others
    are refused at once (``upload_in_progress``), and the attempts taken stay within
    the limit."""
    _, photo = passport
    server = await onboarding_server(start_server, max_attempts=5)
    invitation = await server.invite()
    async with OnboardingClient(server.url, invitation.token) as client:
        await client.consent("en")
        results = await asyncio.gather(
            *(client.document("front", photo, country="UTO", doc_type="passport")
              for _ in range(30)),
            return_exceptions=True,
        )  # fmt: skip
    codes = [r.code if isinstance(r, OnboardingError) else "analysed" for r in results]
    assert 1 <= codes.count("analysed") <= 5, codes
    assert set(codes) <= {"analysed", "upload_in_progress", "too_many_attempts"}, codes
    attempts = await server.services.repo.count_attempts(invitation.session_id, "document_front")
    assert attempts == codes.count("analysed") <= 5
