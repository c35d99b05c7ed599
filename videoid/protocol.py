"""Payloads of the Socket.IO events clients send, validated before they reach the core.

Unknown fields are rejected; strings have bounds. docs/protocol.md describes each."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Empty(Payload):
    pass


class WebrtcOffer(Payload):
    type: Literal["offer"] = "offer"
    sdp: str = Field(min_length=1, max_length=1_000_000)
    """Size is checked against media.max_sdp_bytes afterwards, with its own error code."""


class WebrtcCandidate(Payload):
    candidate: str = Field(max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=64)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=16)


class SetPresence(Payload):
    status: Literal["available", "paused"]


class SessionRef(Payload):
    session_id: str = Field(min_length=36, max_length=36)


class Decide(Payload):
    session_id: str = Field(min_length=36, max_length=36)
    outcome: Literal["approved", "rejected", "suspended"]
    reason_code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    reason_text: str = Field(default="", max_length=2000)


class Challenge(Payload):
    kinds: list[str] = Field(default_factory=list, max_length=5)
    random: int = Field(default=0, ge=0, le=5)
    """Draw this many challenges at random instead of naming them."""


class Snapshot(Payload):
    kind: str = Field(min_length=1, max_length=32)


class ChecklistAnswer(Payload):
    item: str = Field(min_length=1, max_length=128)
    answer: Literal["passed", "failed"]
    note: str = Field(default="", max_length=500)


class OtpCheck(Payload):
    code: str = Field(min_length=1, max_length=16)


class ChatMessage(Payload):
    text: str = Field(max_length=4000)
    """Emptiness and length are checked against call.chat_max_chars afterwards, with
    their own code (``invalid_message``)."""


class CameraInfo(Payload):
    label: str = Field(max_length=200)
