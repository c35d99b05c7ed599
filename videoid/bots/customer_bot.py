"""The customer bot: follows an invitation link, queues, and takes the call with a video
file as its camera. For demos, tests and load."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiortc.mediastreams import MediaStreamTrack

from .media_client import ClientPeer
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


@dataclass
class CustomerResult:
    session_id: str = ""
    outcome: str | None = None
    positions: list[int] = field(default_factory=list)
    video_frames_received: int = 0
    audio_frames_received: int = 0
    call_started_at: float | None = None
    first_video_at: float | None = None


class CustomerBot:
    def __init__(
        self,
        invite_url: str,
        video: str | Path | MediaStreamTrack | None,
        *,
        on_video_frame: Any = None,
    ) -> None:
        self.server, self._token = parse_invitation(invite_url)
        self._video = video
        self._on_video_frame = on_video_frame
        self.signaling = SignalingClient(self.server, "/customer")
        self.peer: ClientPeer | None = None
        self.result = CustomerResult()

    async def connect(self) -> dict[str, Any]:
        await self.signaling.connect({"token": self._token})
        session = await self.signaling.next("session", 10)
        self.result.session_id = session["session_id"]
        return session

    async def join_queue(self) -> dict[str, Any]:
        reply = await self.signaling.request("join_queue")
        if "position" in reply:
            self.result.positions.append(reply["position"])
        return reply

    async def wait_call(self, timeout_seconds: float = 120.0) -> None:
        await self.signaling.next("call_started", timeout_seconds)
        self.result.call_started_at = time.monotonic()
        for update in self.signaling.drain("queue"):
            self.result.positions.append(update["position"])

    async def connect_media(self) -> None:
        self.peer = ClientPeer(self._video, on_video_frame=self._on_video_frame)
        reply = await self.signaling.request(
            "webrtc_offer", {"type": "offer", "sdp": await self.peer.offer()}
        )
        await self.peer.accept_answer(reply["answer"]["sdp"])

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
            await self.connect()
            await self.join_queue()
            await self.wait_call(timeout_seconds)
            await self.connect_media()
            await self.wait_outcome(timeout_seconds)
        finally:
            await self.close()
        return self.result

    async def close(self) -> None:
        self._collect()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None
        await self.signaling.close()
