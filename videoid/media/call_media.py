"""One call's media: the two server-side peers bridged, the recording and the live
analysis, and the work each runs in the background.

The call center decides when a call's media opens and closes; :class:`CallMedia` does
the rest and owns every task it starts, so that :meth:`CallMedia.close` leaves nothing
running: the recording's start is waited for (its row is written, then finished), the
rest is cancelled *and awaited*. What the evidence keeps of the call (the recording's
end, the analysis summary) comes back from ``close`` for the center to write, which
keeps what the storage refuses until it takes it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from aiortc.contrib.media import MediaRelay

from ..analysis_pool import AnalysisPool
from ..clock import Clock
from ..config import Config
from ..errors import MediaError, StorageError
from ..liveness.live import LiveAnalysis
from ..recordings.recorder import CallRecorder
from ..storage.envelope import KeyWrapper
from .ice_policy import IcePolicy
from .participant_peer import ParticipantPeer, bridge

logger = logging.getLogger(__name__)

START_WAIT_SECONDS = 5.0
"""How long closing a call waits for its recording's start (a thread and one write);
a start slower than that finishes the recording itself, in :attr:`CallMedia.finishing`."""

Role = Literal["customer", "operator"]
ROLES: tuple[Role, Role] = ("customer", "operator")

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Sends an event about the call to its operator (``event``, ``data``)."""


class RecordingRows(Protocol):
    """Where a recording's row is written (the repository): when it starts, and when
    it ends if its start outlived the call (see :meth:`CallMedia.close`)."""

    async def add_recording(
        self,
        recording_id: str,
        session_id: str,
        file: str,
        key_id: str,
        wrapped_key: bytes,
        created: float,
    ) -> None: ...

    async def finish_recording(
        self, recording_id: str, status: str, summary: dict[str, Any], now: float
    ) -> None: ...


@dataclass(frozen=True)
class RecordingStore:
    """Where recordings go and the key port that wraps their data keys."""

    directory: Path
    wrapper: KeyWrapper


@dataclass(frozen=True)
class MediaParts:
    """What every call's media is made with: one per server."""

    config: Config
    clock: Clock
    ice: IcePolicy
    relay: MediaRelay
    rows: RecordingRows
    recordings: RecordingStore | None = None
    """Where calls are recorded; None records nothing."""
    live_pool: AnalysisPool | None = None
    """Where the customer's live video is analysed; None turns the analysis off."""
    match_pool: AnalysisPool | None = None
    """Where the live face's descriptor is computed (the live pool when None)."""
    reference_photos: Callable[[str], Awaitable[dict[str, bytes]]] | None = None
    """The session's photos to compare the live face with (portrait, selfie)."""


@dataclass(frozen=True)
class RecordingEnd:
    recording_id: str
    status: str
    """``complete``, or ``failed`` (the summary's ``error`` says why)."""
    summary: dict[str, Any]


@dataclass(frozen=True)
class MediaClosed:
    """What the evidence keeps of a call's media, for the center to write."""

    recording: RecordingEnd | None
    analysis: dict[str, Any] | None
    """The live analysis' summary; None when it was off."""


class CallMedia:
    def __init__(
        self,
        session_id: str,
        parts: MediaParts,
        publish: Publish,
        on_recording_failed: Callable[[], None],
    ) -> None:
        """``publish`` sends the analysis' events to the operator (and a challenge's
        to the customer); ``on_recording_failed`` is told once the call stops being
        recorded (or cannot be)."""
        self.session_id = session_id
        self._parts = parts
        self._on_recording_failed = on_recording_failed
        media = parts.config.media
        self.peers: dict[Role, ParticipantPeer] = {
            role: ParticipantPeer(
                f"session {session_id} {role}",
                forwarding=media.forwarding,
                policy=parts.ice,
                max_sdp_bytes=media.max_sdp_bytes,
                relay=parts.relay,
            )
            for role in ROLES
        }
        bridge(self.peers["customer"], self.peers["operator"])
        self.recorder: CallRecorder | None = None
        self.recording_failed = False
        """This call stopped being recorded (or never was)."""
        self.analysis: LiveAnalysis | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recording_start: asyncio.Task[None] | None = None
        self.finishing: asyncio.Task[None] | None = None
        """A recording's start that outlived :meth:`close`'s wait: it closes and
        finishes its recording itself; the owner of the call awaits it (at stop)."""
        self._closed = False
        if parts.recordings is not None and media.forwarding == "encoded":
            self._recording_start = self._spawn(self._start_recording(parts.recordings))
        if parts.live_pool is not None:
            analysis = self.analysis = LiveAnalysis(
                session_id,
                parts.live_pool,
                parts.config.live,
                publish,
                match_pool=parts.match_pool,
                max_bytes=parts.config.onboarding.max_upload_bytes,
                max_pixels=parts.config.onboarding.max_pixels,
            )
            self.peers["customer"].on_video = analysis.watch
            if parts.reference_photos is not None:
                self._spawn(self._load_references(analysis, parts.reference_photos))

    # -- what the call's participants send --------------------------------------------

    async def answer(self, role: Role, sdp: str) -> str:
        return await self._peer(role).answer(sdp)

    async def add_candidate(
        self, role: Role, candidate: str, sdp_mid: str | None, index: int | None
    ) -> None:
        await self._peer(role).add_candidate(candidate, sdp_mid, index)

    @property
    def customer_connected(self) -> bool:
        """The customer's media is up (the call has really begun for them)."""
        pc = self.peers["customer"].pc
        return pc is not None and pc.connectionState == "connected"

    def mark_gap(self, gap: dict[str, Any]) -> None:
        """The customer was away (R12): the recording marks the gap and goes on."""
        if self.recorder is not None:
            self.recorder.mark_gap(gap)

    async def tick(self) -> None:
        if self.analysis is not None:
            await self.analysis.tick()

    async def close(self) -> MediaClosed:
        """Close the peers, finish the recording and stop the analysis; nothing of this
        call runs afterwards but, at most, a recording's start slower than
        :data:`START_WAIT_SECONDS` (:attr:`finishing`). Closing twice returns nothing
        the second time. A part that fails to close is logged; the others still close."""
        if self._closed:
            return MediaClosed(None, None)
        self._closed = True
        recording = analysis = None
        try:
            for failed in await asyncio.gather(
                *(peer.close() for peer in self.peers.values()), return_exceptions=True
            ):
                if isinstance(failed, Exception):
                    logger.error("session %s: a peer failed to close", self.session_id,
                                 exc_info=failed)  # fmt: skip
            start = self._recording_start
            if start is not None and not start.done():
                # not cancelled: a recording whose row is written must be finished
                await asyncio.wait({start}, timeout=START_WAIT_SECONDS)
                if not start.done():
                    self._tasks.discard(start)
                    self.finishing = start  # it finishes the recording when it is done
            if self.recorder is not None and self.finishing is None:
                recording = await self._finish_recording(self.recorder)
        finally:
            if self.analysis is not None:
                try:
                    await self.analysis.close()
                    analysis = self.analysis.summary()
                except Exception:
                    logger.exception("session %s: the analysis failed to close", self.session_id)
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            for peer in self.peers.values():  # nothing of the call is reachable from them
                peer.on_tap = peer.on_video = None
            self.recorder = self.analysis = None
        return MediaClosed(recording, analysis)

    # -- internals --------------------------------------------------------------------

    def _peer(self, role: Role) -> ParticipantPeer:
        if self._closed:
            raise MediaError("the call has ended", code="call_ended")
        return self.peers[role]

    async def _start_recording(self, store: RecordingStore) -> None:
        """Record the call from its first frame: the recorder subscribes to each tap as
        it appears (again after a reconnect: the same recording goes on)."""
        parts, sid = self._parts, self.session_id
        recording_id = uuid.uuid4().hex
        now = parts.clock.now()
        file = f"{sid[:2]}/{recording_id}.vrec"
        recorder: CallRecorder | None = None
        try:
            recorder = await asyncio.to_thread(
                CallRecorder,
                store.directory / file,
                recording_id,
                store.wrapper,
                created=now,
                keyframe_seconds=parts.config.recording.keyframe_seconds,
                on_error=lambda error: self._recording_stopped(),
            )
            await parts.rows.add_recording(
                recording_id, sid, file, recorder.key_id, recorder.wrapped_key, now
            )
        except (OSError, StorageError) as err:
            logger.error("session %s: the call cannot be recorded: %s", sid, err)
            self._recording_stopped()
            if recorder is not None:  # its file closed; it has no row to finish
                await recorder.close()
            return
        if self._closed:
            if self.finishing is not None:  # close() did not wait this long
                end = await self._finish_recording(recorder)
                await parts.rows.finish_recording(
                    end.recording_id, end.status, end.summary, parts.clock.now()
                )
            else:  # close() is waiting: it finishes it
                self.recorder = recorder
            return
        self.recorder = recorder
        recorder.start()
        for role, peer in self.peers.items():
            for kind, tap in peer.taps.items():
                recorder.watch(f"{role}_{kind}", tap)

            def on_tap(kind: str, tap: Any, role: str = role) -> None:
                if self.recorder is not None and not self._closed:
                    self.recorder.watch(f"{role}_{kind}", tap)

            peer.on_tap = on_tap

    def _recording_stopped(self) -> None:
        """The call goes on unrecorded from here: its operator is told at once (they
        may end it and have the customer join again)."""
        if not self.recording_failed:
            self.recording_failed = True
            if not self._closed:  # the call is over: its operator may be in another
                self._on_recording_failed()

    async def _finish_recording(self, recorder: CallRecorder) -> RecordingEnd:
        summary = await recorder.close()
        status = "complete" if summary["error"] is None else "failed"
        logger.info(
            "session %s: recording %s %s (%s segments)",
            self.session_id,
            recorder.recording_id,
            status,
            summary["segments"],
        )
        return RecordingEnd(recorder.recording_id, status, summary)

    @staticmethod
    async def _load_references(
        analysis: LiveAnalysis, photos: Callable[[str], Awaitable[dict[str, bytes]]]
    ) -> None:
        await analysis.load_references(await photos(analysis.session_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "session %s: the call's media work failed",
                self.session_id,
                exc_info=task.exception(),
            )
