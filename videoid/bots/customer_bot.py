"""The customer bot: follows an invitation link, goes through the onboarding steps the
session requires (consent, document photos, data check, selfie, A/V test with the
connectivity test), queues, and takes the call with a video file as its camera. For
demos, tests and load."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiortc.mediastreams import MediaStreamTrack

from ..customer_client.onboarding import PERSONAL_FIELDS
from .media_client import ClientPeer
from .onboarding_client import OnboardingClient, OnboardingError
from .signaling_client import ProtocolError, SignalingClient

logger = logging.getLogger(__name__)


def parse_invitation(url: str) -> tuple[str, str]:
    """Split an invitation link ``http://host/join#TOKEN`` into (server URL, token)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc or not parts.fragment:
        raise ProtocolError(
            "an invitation link looks like http://host:port/join#TOKEN",
            code="invalid_invitation_url",
        )
    return f"{parts.scheme}://{parts.netloc}", parts.fragment


@dataclass(frozen=True)
class OnboardingInput:
    """What the bot shows in the onboarding steps."""

    document_front: Path
    selfie: Path
    document_back: Path | None = None
    country: str | None = None
    """The document's issuing country (alpha-3 as in the zone); read from the zone
    when not given."""
    document_type: str | None = None
    """``passport`` without a back, else ``id_card``, unless given."""
    language: str = "en"


STEPS = ("consented", "documents_captured", "data_confirmed", "selfie_taken", "av_tested")


def _country_from_zone(*paths: Path) -> str:
    from ..documents.analysis import mrz_file
    from ..errors import VideoidError

    for path in paths:
        try:
            return mrz_file(path.read_bytes()).issuing_state
        except VideoidError:
            continue
    raise ProtocolError(
        "cannot read the issuing country from the document; give --country", code="usage"
    )


@dataclass
class CustomerResult:
    session_id: str = ""
    outcome: str | None = None
    positions: list[int] = field(default_factory=list)
    video_frames_received: int = 0
    audio_frames_received: int = 0
    call_started_at: float | None = None
    first_video_at: float | None = None
    steps: list[tuple[str, str]] = field(default_factory=list)
    """The onboarding steps done, each with what the server said."""


class CustomerBot:
    def __init__(
        self,
        invite_url: str,
        video: str | Path | MediaStreamTrack | None,
        *,
        on_video_frame: Any = None,
        onboarding: OnboardingInput | None = None,
        on_step: Any = None,
        sms_outbox: Path | None = None,
        phone: str | None = None,
        camera_label: str = "videoid customer bot (video file)",
    ) -> None:
        self.server, self._token = parse_invitation(invite_url)
        self._sms_outbox = sms_outbox
        self.phone = phone
        self._camera_label = camera_label
        self._onboarding = onboarding
        self._on_step = on_step
        self._video = video
        self._on_video_frame = on_video_frame
        self.signaling = SignalingClient(self.server, "/customer")
        self.signaling.on("otp_sent", self._read_back_code)
        self.peer: ClientPeer | None = None
        self._ice: dict[str, Any] | None = None
        self.result = CustomerResult()

    async def _read_back_code(self, event: dict[str, Any]) -> None:
        """The SMS code, read back to the operator: a bot has no voice, so it types it in
        the call's chat (as a customer who cannot speak would). The code comes from the
        development SMS outbox, which stands in for the phone."""
        if self._sms_outbox is None:
            return
        from ..notify import OutboxSms

        for _ in range(50):
            messages = OutboxSms(self._sms_outbox).messages(self.phone)
            if messages:
                code = re.search(r"\b(\d{6})\b", messages[-1]["text"])
                if code:
                    await self.signaling.request("chat", {"text": f"My code is {code.group(1)}"})
                    self._step("code", "read back in the chat")
                    return
            await asyncio.sleep(0.1)

    async def connect(self) -> dict[str, Any]:
        await self.signaling.connect({"token": self._token})
        session = await self.signaling.next("session", 10)
        self.result.session_id = session["session_id"]
        return session

    def _step(self, name: str, outcome: str) -> None:
        self.result.steps.append((name, outcome))
        if self._on_step is not None:
            self._on_step(name, outcome)

    async def onboard(self) -> None:
        """Do the pre-call steps the session still requires, in order. Raises
        :class:`OnboardingError` when the server refuses one (a photo's problems
        included) and ProtocolError when the bot was given nothing to show."""
        async with OnboardingClient(self.server, self._token) as client:
            overview = await client.overview()
            order = ("created", *STEPS)
            todo = [
                s
                for s in overview["required_steps"]
                if order.index(s) > order.index(overview["state"])
                if overview["state"] in order
            ]
            if not todo:
                return
            given = self._onboarding
            needs = {"documents_captured", "selfie_taken"} & set(todo)
            if given is None and needs:
                raise ProtocolError(
                    "this provider requires the onboarding steps: give --document and --selfie",
                    code="usage",
                )
            for step in todo:
                await getattr(self, f"_do_{step}")(client, given)

    async def _do_consented(self, client: OnboardingClient, given: OnboardingInput | None) -> None:
        texts = await client.consent_texts(given.language if given else "en")
        await client.consent(given.language if given else "en")
        versions = ", ".join(f"{t['document']} {t['version']}" for t in texts)
        self._step("consent", f"accepted ({versions})")

    async def _do_documents_captured(self, client: OnboardingClient, given: Any) -> None:
        assert isinstance(given, OnboardingInput)
        back = given.document_back
        doc_type = given.document_type or ("id_card" if back else "passport")
        country = given.country or _country_from_zone(
            *(p for p in (back, given.document_front) if p)
        )
        sides = [("front", given.document_front)] + ([("back", back)] if back else [])
        for side, path in sides:
            reply = await client.document(
                side, path.read_bytes(), country=country, doc_type=doc_type
            )
            if not reply["accepted"]:
                raise OnboardingError(422, reply)
            warnings = ", ".join(reply["warnings"]) or "no warnings"
            self._step(f"document {side}", f"accepted ({doc_type}, {country}; {warnings})")
        await client.document_done()

    async def _do_data_confirmed(self, client: OnboardingClient, given: Any) -> None:
        prefill = (await client.overview())["prefill"]
        fields = {f: str(prefill.get(f) or "") for f in (*PERSONAL_FIELDS, "phone", "email")}
        if prefill.get("tax_code"):
            fields["tax_code"] = prefill["tax_code"]
        await client.confirm_data(fields)
        self.phone = self.phone or fields["phone"]
        self._step(
            "data",
            f"confirmed as read: {fields['surname']}, {fields['given_names']}, "
            f"born {fields['date_of_birth']}",
        )

    async def _do_selfie_taken(self, client: OnboardingClient, given: Any) -> None:
        assert isinstance(given, OnboardingInput)
        reply = await client.selfie(given.selfie.read_bytes())
        if not reply["accepted"]:
            raise OnboardingError(422, reply)
        self._step("selfie", "accepted")

    async def _do_av_tested(self, client: OnboardingClient, given: Any) -> None:
        probe = await client.connectivity_test()
        self._step(
            "connectivity",
            f"{'passed' if probe['passed'] else 'failed'}: round trip {probe['rtt_ms']} ms, "
            f"upload {probe['bitrate_kbps']} kbit/s",
        )
        # a bot has no loudspeaker: it reports what its media path does
        await client.av_test({"camera": True, "microphone": True, "speaker": True})
        self._step("a/v test", "passed")

    async def join_queue(self) -> dict[str, Any]:
        reply = await self.signaling.request("join_queue")
        if "position" in reply:
            self.result.positions.append(reply["position"])
        return reply

    async def wait_call(self, timeout_seconds: float = 120.0) -> None:
        self._ice = await self.signaling.next("call_started", timeout_seconds)
        self.result.call_started_at = time.monotonic()
        for update in self.signaling.drain("queue"):
            self.result.positions.append(update["position"])

    async def connect_media(self) -> None:
        # the server's STUN/TURN servers and policy (relay only when it forces relay)
        self.peer = ClientPeer(self._video, on_video_frame=self._on_video_frame, ice=self._ice)
        reply = await self.signaling.request(
            "webrtc_offer", {"type": "offer", "sdp": await self.peer.offer()}
        )
        await self.peer.accept_answer(reply["answer"]["sdp"])
        await self.signaling.request("camera", {"label": self._camera_label})

    async def wait_outcome(self, timeout_seconds: float = 300.0) -> str:
        outcome = await self.signaling.next("outcome", timeout_seconds)
        self.result.outcome = outcome["outcome"]
        self._collect()
        return self.result.outcome

    def _collect(self) -> None:
        if self.peer is not None:
            self.result.video_frames_received = self.peer.frames("video")
            self.result.audio_frames_received = self.peer.frames("audio")
            counter = self.peer.counters.get("video")
            if counter is not None:
                self.result.first_video_at = counter.first_frame_at

    async def run(self, timeout_seconds: float = 600.0) -> CustomerResult:
        """The whole visit: connect, queue, call, outcome."""
        try:
            await self.onboard()
            await self.connect()
            await self.join_queue()
            await self.wait_call(timeout_seconds)
            await self.connect_media()
            await self.wait_outcome(timeout_seconds)
        finally:
            await self.close()
        return self.result

    async def certificate_and_signature(self, pin: str, save_to: Path | None = None) -> bytes:
        """After an approval: request the certificate, read the contract, set ``pin``,
        take the SMS code from the development outbox, sign; the signed contract."""
        if self._sms_outbox is None:
            raise ProtocolError("the bot reads its code from the SMS outbox: give it one")
        from ..notify import OutboxSms

        async with OnboardingClient(self.server, self._token) as client:
            overview = await client._call("GET", "/api/signing")
            if overview["state"] == "approved":
                issued = await client._call("POST", "/api/signing/certificate")
                self._step("certificate", f"issued, serial {issued['serial']}")
            contract = await client._call("GET", "/api/signing/contract")
            self._step("contract", f"read, {len(contract['pages'])} page(s)")
            if not (await client._call("GET", "/api/signing"))["pin_set"]:
                await client._call("POST", "/api/signing/pin", json={"pin": pin, "pin_again": pin})
                self._step("pin", "set (the PUK was shown once)")
            outbox = OutboxSms(self._sms_outbox)
            before = len(outbox.messages(self.phone))
            sent = await client._call("POST", "/api/signing/code")
            code = None
            for _ in range(50):
                messages = outbox.messages(self.phone)[before:]
                found = re.search(r"\b(\d{6})\b", messages[-1]["text"]) if messages else None
                if found:
                    code = found.group(1)
                    break
                await asyncio.sleep(0.1)
            if code is None:
                raise ProtocolError(f"no code arrived for {sent['sent_to']}")
            self._step("code", f"received for document {sent['document_ref']}")
            await client._call("POST", "/api/signing/sign", json={"pin": pin, "code": code})
            signed = await client.download("/api/signing/signed.pdf")
            self._step("signed", f"{len(signed)} bytes")
        if save_to is not None:
            await asyncio.to_thread(save_to.write_bytes, signed)
        return signed

    async def close(self) -> None:
        self._collect()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None
        await self.signaling.close()
