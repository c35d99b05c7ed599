"""The operator's tools in a call: checklist, snapshots, challenges, the OTP read-back
and chat. Everything they produce is evidence: a ``call_items`` row each (never a code
in clear), snapshots encrypted in the object store.

The call center owns the call (who is in it, its media and analysis); these tools ask
it which call an operator is in and act on that call only.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from collections import defaultdict, deque
from typing import Any

from PIL import Image

from ..call_center import CallCenter, Notifier
from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..errors import MediaError, ObjectNotFound, RateLimited, ValidationError
from ..liveness.signals import ChallengeKind
from ..media.frame_rgb import frame_rgb
from ..notify import SmsGateway
from ..notify.codes import OneTimeCodes
from ..notify.sms import masked
from ..storage import ObjectStore
from .checklist import SNAPSHOT_KINDS, Checklist
from .decision_gate import Checklists, DecisionGate

logger = logging.getLogger(__name__)

OTP_PURPOSE = "call_readback"


class CallTools:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        center: CallCenter,
        objects: ObjectStore,
        sms: SmsGateway,
        notifier: Notifier,
        clock: Clock,
        checklists: Checklists,
        gate: DecisionGate,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._repo = repo
        self._center = center
        self._objects = objects
        self._sms = sms
        self._notifier = notifier
        self._clock = clock
        self._checklists = checklists
        self.gate = gate
        self._rng = rng or random.SystemRandom()
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._codes = OneTimeCodes(repo, clock)

    # -- checklist --------------------------------------------------------------------

    async def checklist(self, session_id: str) -> Checklist:
        """The session's checklist: drawn once (at random) and kept."""
        return await self._checklists.of(session_id)

    async def answer(
        self, operator_id: int, item_id: str, answer: str, note: str
    ) -> dict[str, Any]:
        session_id = self._center.call_of(operator_id)
        return await self._answer(session_id, item_id, answer, note, f"operator:{operator_id}")

    async def _answer(
        self, session_id: str, item_id: str, answer: str, note: str, by: str
    ) -> dict[str, Any]:
        """Record an answer: written first, then kept in memory. An answer the storage
        refuses (``storage_full``) is not kept: the console shows it not given, and
        the decision's check does not count it (issue 20.4)."""
        snapshots = None  # with the live analysis off there are no frames to take
        if self._center.live_pool is not None:
            snapshots = {s["kind"]: s["object"] for s in await self.snapshots(session_id)}
        return await self._checklists.answer(session_id, item_id, answer, note, by, snapshots)

    def reasons(self) -> dict[str, list[str]]:
        return self.gate.reasons()

    # -- snapshots --------------------------------------------------------------------

    async def snapshot(self, operator_id: int, kind: str) -> dict[str, Any]:
        """Store the customer's latest full-resolution frame, encrypted."""
        if kind not in SNAPSHOT_KINDS:
            raise ValidationError(
                f"kind is one of {', '.join(SNAPSHOT_KINDS)}", code="invalid_snapshot_kind"
            )
        session_id = self._center.call_of(operator_id)
        self._limit(session_id, "snapshot", self._config.call.snapshots_per_minute)
        taken = await self._repo.items(session_id, ["snapshot"])
        if len(taken) >= self._config.call.max_snapshots:
            raise RateLimited(
                "this call has as many snapshots as allowed", code="too_many_snapshots"
            )
        analysis = self._center.analysis(session_id)
        if analysis is None:  # the frames are decoded for the analysis only
            raise MediaError("the live analysis is off: no snapshots", code="analysis_off")
        frame = analysis.latest
        if frame is None or time.time() - analysis.latest_at > 5:
            raise MediaError("no picture from the customer yet", code="no_video")
        jpeg, width, height = await asyncio.to_thread(_jpeg, frame)
        if not self._center.customer_in_call(session_id):
            raise MediaError("the call has ended", code="call_ended")
        now = self._clock.now()
        stored = await self._objects.put(session_id, f"snapshot_{kind}", "image/jpeg", jpeg, now)
        item = {
            "object": stored.id,
            "kind": kind,
            "width": width,
            "height": height,
            "sha256": stored.sha256,
        }
        item_id = await self._repo.add_item(
            session_id, "snapshot", f"operator:{operator_id}", item, now
        )
        logger.info("session %s: %s snapshot %s taken", session_id, kind, stored.id)
        return {"id": item_id, "at": now, **item}

    async def snapshots(self, session_id: str) -> list[dict[str, Any]]:
        return [
            {"id": i["id"], "at": i["at"], **i["data"]}
            for i in await self._repo.items(session_id, ["snapshot"])
        ]

    async def snapshot_image(self, session_id: str, object_id: str) -> bytes:
        if not any(s["object"] == object_id for s in await self.snapshots(session_id)):
            raise ObjectNotFound("no such snapshot in this session", code="image_not_found")
        _, data = await self._objects.get(object_id)
        return data

    # -- challenges -------------------------------------------------------------------

    async def challenge(
        self, operator_id: int, kinds: list[str], random_count: int
    ) -> dict[str, Any]:
        session_id = self._center.call_of(operator_id)
        analysis = self._center.analysis(session_id)
        if analysis is None:
            raise MediaError("the live analysis is off", code="analysis_off")
        if random_count:
            chosen = analysis.random_sequence(random_count)
        else:
            try:
                chosen = [ChallengeKind(k) for k in kinds]
            except ValueError as err:
                raise ValidationError(str(err), code="invalid_challenge") from err
        if not chosen:
            raise ValidationError("name a challenge", code="invalid_challenge")
        # written before the customer is shown it: a request the storage refuses
        # (storage_full) is not carried out
        analysis.check_challenges(chosen)
        await self._repo.add_item(
            session_id,
            "challenge_requested",
            f"operator:{operator_id}",
            {"kinds": [k.value for k in chosen], "random": bool(random_count)},
            self._clock.now(),
        )
        return await analysis.start_challenges(chosen)

    async def camera_label(self, session_id: str, label: str) -> None:
        analysis = self._center.analysis(session_id)
        if analysis is not None:
            analysis.set_camera_label(label)
        await self._repo.add_item(
            session_id, "camera", "customer", {"label": label[:200]}, self._clock.now()
        )

    # -- OTP read-back (R10) ----------------------------------------------------------

    async def send_otp(self, operator_id: int) -> dict[str, Any]:
        session_id = self._center.call_of(operator_id)
        cfg = self._config.call
        now = self._clock.now()
        record = await self._repo.find_session(id=session_id)
        customer = await self._repo.find_customer(record.customer_id) if record else None
        if customer is None or not customer.phone:
            raise ValidationError("the customer has no phone number", code="no_phone")
        issued = await self._codes.issue(
            session_id, OTP_PURPOSE, session_id, cfg.otp_seconds, max_sends=cfg.otp_sends
        )
        code, code_id, expires = issued.code, issued.code_id, issued.expires_at
        minutes = max(1, round(cfg.otp_seconds / 60))
        await self._sms.send(
            customer.phone,
            f"Your identification code is {code}. Read it to the operator in your video call. "
            f"Valid {minutes} min. Never give it to anyone else.",
        )
        event = {
            "event": "sent",
            "code_id": code_id,
            "to": masked(customer.phone),
            "expires_at": expires,
        }
        await self._repo.add_item(session_id, "otp", f"operator:{operator_id}", event, now)
        await self._notifier.to_customer(session_id, "otp_sent", {"expires_at": expires})
        return {
            "sent_to": masked(customer.phone),
            "sent_at": now,
            "expires_at": expires,
            "attempts_left": cfg.otp_attempts,
        }

    async def check_otp(self, operator_id: int, code: str) -> dict[str, Any]:
        session_id = self._center.call_of(operator_id)
        actor = f"operator:{operator_id}"
        cfg = self._config.call

        async def record(event: dict[str, Any]) -> None:
            await self._repo.add_item(session_id, "otp", actor, event, self._clock.now())

        await self._codes.redeem(
            session_id, OTP_PURPOSE, session_id, code, cfg.otp_attempts, record
        )
        checklist = await self.checklist(session_id)
        view = None
        for entry in checklist.entries:
            if entry["kind"] == "otp":
                view = await self._answer(session_id, entry["id"], "passed", "", "system")
        return {"result": "matched", "checklist": view or checklist.to_json()}

    # -- chat -------------------------------------------------------------------------

    async def chat(self, session_id: str, sender: str, text: str) -> dict[str, Any]:
        """A message from ``sender`` (``customer`` or ``operator:<id>``) to the other side."""
        text = text.strip()
        if not text or len(text) > self._config.call.chat_max_chars:
            raise ValidationError(
                f"a message has 1 to {self._config.call.chat_max_chars} characters",
                code="invalid_message",
            )
        operator_id = self._center.operator_in_call(session_id)
        if operator_id is None:
            raise MediaError("there is no call", code="no_call")
        self._limit(session_id, f"chat:{sender}", self._config.call.chat_per_minute)
        now = self._clock.now()
        item_id = await self._repo.add_item(session_id, "chat", sender, {"text": text}, now)
        message = {
            "id": item_id,
            "from": "customer" if sender == "customer" else "operator",
            "text": text,
            "at": now,
        }
        if sender == "customer":
            await self._notifier.to_operator(
                operator_id, "chat", {"session_id": session_id, **message}
            )
        else:
            await self._notifier.to_customer(session_id, "chat", message)
        return message

    async def operator_chat(self, operator_id: int, text: str) -> dict[str, Any]:
        return await self.chat(self._center.call_of(operator_id), f"operator:{operator_id}", text)

    # -- everything, for the operator's and the supervisor's screens ------------------

    async def call_view(self, session_id: str) -> dict[str, Any]:
        items = await self._repo.items(
            session_id, ["snapshot", "chat", "otp", "challenge_requested", "analysis", "camera"]
        )
        analysis = self._center.analysis(session_id)
        summaries = [i["data"] for i in items if i["kind"] == "analysis"]
        return {
            "checklist": (await self.checklist(session_id)).to_json(),
            "snapshots": [
                {"id": i["id"], "at": i["at"], **i["data"]}
                for i in items
                if i["kind"] == "snapshot"
            ],
            "chat": [
                {
                    "id": i["id"],
                    "at": i["at"],
                    "from": "customer" if i["actor"] == "customer" else "operator",
                    "text": i["data"]["text"],
                }
                for i in items
                if i["kind"] == "chat"
            ],
            "otp": [
                {"at": i["at"], **{k: v for k, v in i["data"].items() if k != "code_id"}}
                for i in items
                if i["kind"] == "otp"
            ],
            "analysis": analysis.summary()
            if analysis is not None
            else (summaries[-1] if summaries else None),
            "recording_failed": self._center.recording_failed(session_id),
        }

    # -- internals --------------------------------------------------------------------

    def _limit(self, session_id: str, what: str, per_minute: int) -> None:
        now = time.monotonic()
        window = self._windows[(session_id, what)]
        while window and window[0] <= now - 60:
            window.popleft()
        # forget the windows with nothing in the last minute (calls ended)
        for key in [k for k, w in self._windows.items() if not w or w[-1] <= now - 60]:
            del self._windows[key]
        window = self._windows[(session_id, what)]
        if len(window) >= per_minute:
            raise RateLimited(f"too many {what.split(':')[0]} requests; slow down")
        window.append(now)


def _jpeg(frame: Any) -> tuple[bytes, int, int]:
    image = Image.fromarray(frame_rgb(frame))  # the live analysis may convert it meanwhile
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue(), image.width, image.height
