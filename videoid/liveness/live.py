"""The live analysis of one call: the customer's decoded video, sampled a few times a
second into the analysis pool, and the signals that come back, pushed to the operator.

One :class:`LiveAnalysis` per call. It reads every decoded frame (cheap: size,
timestamp, arrival time feed the injection signals and the frame rate), keeps the
latest for snapshots, and sends one frame at a time to the pool at the configured rate
(faster while a challenge runs). Nothing CPU-heavy runs on the event loop: the colour
conversion runs in a thread, the analysis in a worker process.

Times here are wall-clock seconds (``time.time``) of the media, not the app's clock:
they measure how frames arrive, and the operator's page compares them with its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..analysis_pool import AnalysisPool
from ..config import LiveConfig
from ..errors import ValidationError, VideoidError
from ..media.frame_rgb import frame_rgb
from .frame_analysis import analyse_frame, face_descriptor, reference_encoding
from .signals import ChallengeKind, ChallengeRun, FrameResult, LiveSignals

logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Sends an event (``signals``, ``challenge``) to whoever watches the call."""

INSTRUCTIONS = {
    ChallengeKind.TURN_LEFT: "turn_left",
    ChallengeKind.TURN_RIGHT: "turn_right",
    ChallengeKind.LOOK_UP: "look_up",
    ChallengeKind.BLINK_TWICE: "blink_twice",
    ChallengeKind.SMILE: "smile",
    ChallengeKind.DOCUMENT_CLOSE: "document_close",
}
RANDOM_KINDS = (
    ChallengeKind.TURN_LEFT,
    ChallengeKind.TURN_RIGHT,
    ChallengeKind.LOOK_UP,
    ChallengeKind.BLINK_TWICE,
    ChallengeKind.SMILE,
)
"""The challenges a random sequence draws from (the document one needs the document)."""


class LiveAnalysis:
    def __init__(
        self,
        session_id: str,
        pool: AnalysisPool,
        config: LiveConfig,
        publish: Publish,
        *,
        match_pool: AnalysisPool | None = None,
        max_bytes: int = 15_000_000,
        max_pixels: int = 40_000_000,
        rng: random.Random | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.session_id = session_id
        self._pool = pool
        self._match_pool = match_pool or pool
        self._matching = False
        self._config = config
        self._publish = publish
        self._unavailable = False
        """Whether the operator was told the signals stopped (and none came since)."""
        self._max_bytes, self._max_pixels = max_bytes, max_pixels
        self._rng = rng or random.SystemRandom()
        self._now = now
        self.signals = LiveSignals(config)
        self.latest: av.VideoFrame | None = None
        self.latest_at = 0.0
        self.challenge: ChallengeRun | None = None
        self.pending: deque[ChallengeKind] = deque()
        self.challenges: list[dict[str, Any]] = []
        """Every challenge run in this call, as evidence."""
        self.delays: deque[float] = deque(maxlen=1000)
        """Seconds from a frame's arrival to its signals being sent."""
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._last_sample = 0.0
        self._last_encoding = 0.0
        self._last_far_faces = 0.0
        self._jobs: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- input ------------------------------------------------------------------------

    def watch(self, track: MediaStreamTrack) -> None:
        """Read the customer's (new) video track; a reconnect replaces the previous one."""
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._read(track))

    def set_camera_label(self, label: str) -> None:
        self.signals.camera_label = label[:200]

    async def load_references(self, photos: dict[str, bytes]) -> None:
        """Compute the descriptors of the document portrait and the selfie, in the pool."""
        for name, data in photos.items():
            try:
                encoding = await self._match_pool.run(
                    reference_encoding, data, self._max_bytes, self._max_pixels
                )
            except Exception:
                logger.exception("session %s: the %s cannot be read", self.session_id, name)
                continue
            if encoding is not None:
                self.signals.references[name] = tuple(encoding)

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.VideoFrame):
                continue
            now = self._now()
            self.signals.frame_received(now, frame.pts, frame.width, frame.height)
            self.latest, self.latest_at = frame, now
            rate = self._config.challenge_fps if self.challenge else self._config.analysis_fps
            if not self._busy and now - self._last_sample >= 1.0 / max(rate, 0.1):
                self._busy, self._last_sample = True, now
                self._spawn(self._analyse(frame, now))

    async def _analyse(self, frame: av.VideoFrame, at: float) -> None:
        try:
            want_document = (
                self.challenge is not None and self.challenge.kind is ChallengeKind.DOCUMENT_CLOSE
            )
            want_far_faces = at - self._last_far_faces >= 1.0
            if want_far_faces:
                self._last_far_faces = at
            rgb = await asyncio.to_thread(frame_rgb, frame)  # a snapshot may convert it too
            raw = await self._pool.run(
                analyse_frame, rgb, at, want_document=want_document, want_far_faces=want_far_faces
            )
            if self._closed:
                return
            result = FrameResult.from_dict(raw)
            self.signals.add(result)
            if (
                result.box is not None
                and result.faces == 1
                and self.signals.references
                and not self._matching
                and at - self._last_encoding >= self._config.match_interval_seconds
            ):
                self._matching, self._last_encoding = True, at
                self._spawn(self._match(rgb, result.box))
            await self._feed_challenge(result)
            await self._send_signals(at, raw)
            self._unavailable = False  # the console clears its notice with the signals
        except Exception as err:
            logger.exception("session %s: frame analysis failed", self.session_id)
            if not self._unavailable and not self._closed:
                # the operator must not read old signals as current ones (issue 20.7)
                self._unavailable = True
                code = err.code if isinstance(err, VideoidError) else "analysis_failed"
                await self._publish(
                    "signals_unavailable", {"session_id": self.session_id, "reason": code}
                )
        finally:
            self._busy = False

    async def _match(self, rgb: Any, box: tuple[float, float, float, float]) -> None:
        """The face match runs beside the signals (its own pool): a descriptor takes
        about 120 ms, which no frame's signals wait for."""
        try:
            encoding = await self._match_pool.run(face_descriptor, rgb, box)
            if not self._closed:
                self.signals.matched(tuple(encoding))
        except Exception:
            logger.exception("session %s: face match failed", self.session_id)
        finally:
            self._matching = False

    def _spawn(self, coro: Any) -> None:
        job = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- challenges -------------------------------------------------------------------

    def check_challenges(self, kinds: list[ChallengeKind]) -> None:
        """Raises what :meth:`start_challenges` would refuse (``too_many_challenges``)."""
        if len(self.pending) + len(kinds) > 10:
            raise ValidationError("too many challenges queued", code="too_many_challenges")

    async def start_challenges(self, kinds: list[ChallengeKind]) -> dict[str, Any]:
        """Queue challenges; the first starts now unless one is running."""
        self.check_challenges(kinds)
        self.pending.extend(kinds)
        if self.challenge is None:
            await self._next_challenge()
        return self.state()

    def random_sequence(self, count: int = 3) -> list[ChallengeKind]:
        return self._rng.sample(RANDOM_KINDS, k=min(count, len(RANDOM_KINDS)))

    async def tick(self) -> None:
        """Fail a challenge whose time ran out without frames (the stream stalled)."""
        if self.challenge is not None and self.challenge.expire(self._now()) is not None:
            await self._challenge_done()

    async def _feed_challenge(self, result: FrameResult) -> None:
        if self.challenge is not None and self.challenge.feed(result) is not None:
            await self._challenge_done()

    async def _next_challenge(self) -> None:
        if not self.pending:
            return
        kind = self.pending.popleft()
        now = self._now()
        baseline = [r for r in self.signals.results if r.at >= now - 2.0]
        timeout = self._config.challenge_seconds * (1.5 if kind is ChallengeKind.BLINK_TWICE else 1)
        self.challenge = ChallengeRun(kind, now, timeout, baseline)
        await self._publish("challenge", {"session_id": self.session_id, **self.state()})

    async def _challenge_done(self) -> None:
        run = self.challenge
        assert run is not None
        self.challenges.append(run.to_json())
        self.challenge = None
        logger.info("session %s: challenge %s %s", self.session_id, run.kind.value, run.result)
        await self._publish("challenge", {"session_id": self.session_id, **self.state()})
        await self._next_challenge()

    def state(self) -> dict[str, Any]:
        return {
            "current": self.challenge.to_json() if self.challenge else None,
            "pending": [k.value for k in self.pending],
            "done": self.challenges[-10:],
        }

    # -- output -----------------------------------------------------------------------

    async def _send_signals(self, frame_at: float, raw: dict[str, Any]) -> None:
        now = self._now()
        payload = self.signals.to_json(now)
        payload["session_id"] = self.session_id
        payload["frame_at"] = frame_at
        payload["sent_at"] = now
        payload["liveness_ms"] = round(raw.get("liveness_ms", 0.0), 2)
        payload["liveness_cpu_ms"] = round(raw.get("liveness_cpu_ms", 0.0), 2)
        self.delays.append(now - frame_at)
        await self._publish("signals", payload)

    def summary(self) -> dict[str, Any]:
        """What the call's analysis found, for the evidence."""
        now = self._now()
        return {
            "signals": self.signals.to_json(now),
            "analysed_frames": self.signals.analysed,
            "challenges": self.challenges,
        }

    async def close(self) -> None:
        """Stop reading and analysing; returns once nothing of it runs (cancelled and
        awaited: a task left to finish later would touch a closed analysis)."""
        self._closed = True
        tasks = [t for t in (self._task, *self._jobs) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.latest = None
