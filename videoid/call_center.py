"""The call center: the driver between the call desk (pure: who waits, who is offered
to whom, who is in a call, every deadline) and the outside (database, Socket.IO, media).

Every change goes the same way: under one lock, feed the desk, then carry out the
commands it queued — write, open or close a call's media — and queue its notifications,
which are sent after the lock is released. Media negotiation runs outside the lock.

Memory changes only after its write (issue 20.8). A step someone asked for (accept,
decide, join the queue) that cannot be written is not taken: the desk is restored to
the checkpoint taken before it, and the error (``storage_full`` on a full disk) goes
back to whoever asked, who may try again. A step that happened regardless (a
connection lost, a time run out) is followed in memory at once; what of it could not be
written is kept and written by the tick when the storage takes it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from .analysis_pool import AnalysisPool
from .clock import Clock
from .config import Config
from .db import OperatorRecord, Repository, SessionRecord
from .desk import (
    CallDesk,
    CloseMedia,
    Command,
    DeskTimes,
    EvidenceChanged,
    ForgetIfIdle,
    Forgotten,
    NotifyCustomer,
    NotifyOperator,
    NotifyOperators,
    OpenMedia,
    Persist,
    RecordGap,
)
from .errors import MediaError, NotAssigned, SessionNotFound
from .liveness.live import LiveAnalysis
from .media.call_media import CallMedia, MediaClosed, MediaParts, Role
from .queue import AssignmentDrawn
from .session import IdentificationSession, State

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10.0

Write = Callable[[], Awaitable[Any]]


class DecisionCheck(Protocol):
    async def check(self, session_id: str, outcome: str, reason_code: str) -> None:
        """Raises to refuse the decision (a reason not on the outcome's list, the
        checklist not done)."""


class Notifier(Protocol):
    async def to_customer(self, session_id: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_operator(self, operator_id: int, event: str, data: dict[str, Any]) -> None: ...

    async def to_operators(self, event: str, data: dict[str, Any]) -> None: ...


class CallCenter:
    def __init__(
        self,
        repo: Repository,
        config: Config,
        notifier: Notifier,
        clock: Clock,
        media: MediaParts,
        gate: DecisionCheck,
        *,
        required_steps: tuple[State, ...] = (),
        evidence_changed: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``media``: what calls' media are made with; ``gate``: what a decision needs
        (checked before it is taken); ``required_steps``: the
        onboarding steps the deployment asks for; ``evidence_changed`` is told
        (session, event) once a decision or a review is saved, and after a step past the
        decision (certificate requested, contract signed): the evidence is sealed
        (again); it must not block."""
        self._repo = repo
        self._media_parts = media
        self._gate = gate
        self._notifier = notifier
        self._clock = clock
        self.ice = media.ice
        """The server's ICE rules and the clients' STUN/TURN servers (credentials)."""
        self._desk = CallDesk(
            DeskTimes(
                offer_timeout_seconds=config.operators.offer_timeout_seconds,
                connect_seconds=config.call.connect_seconds,
                reconnect_seconds=config.call.reconnect_seconds,
            ),
            lambda who, now, customer: self.ice.client_ice(who, now, customer=customer),
            rng=rng or random.SystemRandom(),
            required_steps=required_steps,
            initial_handle_seconds=config.queue.initial_handle_seconds,
        )
        self._media: dict[str, CallMedia] = {}
        """Each call's peers, recording and live analysis, while it is on."""
        self._unrecorded: set[str] = set()
        """Sessions a call of which went unrecorded (until the desk forgets them)."""
        self._unsaved: dict[str, list[tuple[str, Write]]] = {}
        """Writes of what happened (a gap, the call's end) the storage refused, by
        session: what each is, and the write; the tick retries them in order."""
        self._lock = asyncio.Lock()
        self._outbox: list[tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]] = []
        self.required_steps = required_steps
        self.evidence_changed = evidence_changed
        self._background: set[asyncio.Task[Any]] = set()
        self._offers_failing = False
        """The last offer could not be written (logged once until one is again)."""

    @property
    def live_pool(self) -> AnalysisPool | None:
        """Where the customer's live video is analysed; None when the analysis is off."""
        return self._media_parts.live_pool

    @property
    def match_pool(self) -> AnalysisPool | None:
        return self._media_parts.match_pool

    # -- start and stop ---------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart nobody is connected: sessions left waiting or in a call go back
        to the state in which the customer may queue again, recorded (and audited, in
        the same transaction) as a transition by ``system``; recordings left open are
        closed as interrupted (audited ``recording_interrupted``)."""
        self._desk.seed_call_lengths(await self._repo.recent_call_lengths())
        for recording_id, sid in await self._repo.interrupt_recordings(self._clock.now()):
            logger.warning(
                "session %s: recording %s was interrupted (the server stopped)", sid, recording_id
            )
        stale = (State.WAITING.value, State.ASSIGNED.value, State.IN_CALL.value)
        for record in await self._repo.sessions_in(stale):
            machine = self._desk.handle_recovered(record, self._clock.now())
            await self._persist(machine)  # audited with it: a system transition
            logger.info("session %s: recovered to %s after restart", record.id, machine.state.value)

    async def close(self) -> None:
        async with self._lock:
            for session_id in list(self._media):
                await self._close_media(session_id)
            await self._write_unsaved()
            lost = {sid: [what for what, _ in writes] for sid, writes in self._unsaved.items()}
            for machine in self._desk.machines():
                if machine.unsaved_events():
                    lost.setdefault(machine.session_id, []).insert(0, "the session's state")
            for session_id, what in lost.items():
                # the next start finds the session as last written and recovers it
                logger.error(
                    "session %s: not saved as the server stops: %s", session_id, ", ".join(what)
                )
        # what runs in the background (sealing the evidence, a recording's end) is
        # given time to finish; what is still running after that is cancelled
        pending = set(self._background)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=CLOSE_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def tick(self) -> None:
        """Expire offers nobody accepted in time, calls their customer did not join in
        time, and customers' reconnect windows. Called about once a second."""
        async with self._locked():
            await self._write_unsaved()
            async with self._step() as now:
                for session_id, media in self._media.items():
                    if media.customer_connected:
                        self._desk.handle_customer_media(session_id, now)
                self._desk.handle_timer(now)
            await self._assign()
        for session_id in list(self._media):
            on = self._media.get(session_id)  # a call may have ended meanwhile
            if on is not None:
                await on.tick()

    # -- customers --------------------------------------------------------------------

    async def customer_connected(
        self, record: SessionRecord, sid: str
    ) -> tuple[dict[str, Any], str | None]:
        """Returns the customer's view, and the connection this one replaces (to close):
        in a call, a new connection takes over from one that has not noticed it died."""
        async with self._locked():
            async with self._step() as now:
                replaced = self._desk.handle_customer_connected(record, sid, now)
            await self._assign()
            return self._desk.connected_view(record.id, self._clock.now()), replaced

    async def customer_disconnected(self, session_id: str, sid: str) -> None:
        async with self._locked():
            async with self._step() as now:
                self._desk.handle_customer_disconnected(session_id, sid, now)
            await self._assign()

    async def step(
        self,
        session_id: str,
        allowed: Iterable[State],
        save: Callable[[], Awaitable[Any]],
        complete: State | None = None,
        advance: Callable[[IdentificationSession, float], None] | None = None,
    ) -> Any:
        """One onboarding action, atomically with respect to this session's state: check
        that the session is in one of ``allowed`` states, run ``save`` (which persists
        what the step produced), then, if ``complete`` is given, record that step done
        (or move the session on with ``advance``, after the decision).
        A session in another state raises IllegalTransition before anything is saved."""
        async with self._locked(), self._step(asked=True):
            machine = await self._machine(session_id)
            self._desk.check_step(machine, allowed)
            result = await save()
            if complete is not None or advance is not None:
                self._desk.handle_step(machine, self._clock.now(), complete, advance)
            return result

    async def join_queue(self, session_id: str) -> dict[str, Any]:
        async with self._locked():
            async with self._step(asked=True) as now:
                self._desk.handle_join_queue(session_id, now)
            await self._assign()
            return self._desk.customer_view(session_id, self._clock.now())

    async def leave_queue(self, session_id: str) -> dict[str, Any]:
        async with self._locked():
            async with self._step(asked=True) as now:
                self._desk.handle_leave_queue(session_id, now)
            await self._assign()
            return self._desk.customer_view(session_id, self._clock.now())

    # -- operators --------------------------------------------------------------------

    async def operator_connected(self, operator: OperatorRecord, sid: str) -> dict[str, Any]:
        async with self._locked(), self._step():
            return self._desk.handle_operator_connected(operator, sid)

    async def operator_disconnected(self, operator_id: int, sid: str) -> None:
        async with self._locked():
            async with self._step() as now:
                self._desk.handle_operator_disconnected(operator_id, sid, now)
            await self._assign()

    async def set_presence(self, operator_id: int, status: str) -> dict[str, Any]:
        async with self._locked():
            async with self._step():
                self._desk.handle_presence(operator_id, status)
            await self._assign()
            return {"presence": self._desk.presence(operator_id).value}

    async def accept(self, operator_id: int, session_id: str) -> dict[str, Any]:
        async with self._locked(), self._step(asked=True) as now:
            return self._desk.handle_accept(operator_id, session_id, now)

    async def decline(self, operator_id: int, session_id: str) -> dict[str, Any]:
        async with self._locked():
            async with self._step(asked=True) as now:
                self._desk.handle_decline(operator_id, session_id, now)
            await self._assign()
            return {"presence": self._desk.presence(operator_id).value}

    async def decide(
        self, operator_id: int, session_id: str, outcome: str, reason_code: str, reason_text: str
    ) -> dict[str, Any]:
        # refused by the storage, the decision is not taken: the call goes on, and the
        # same decision may be sent again
        async with self._locked():
            async with self._step(asked=True):
                self._desk.check_decision(operator_id, session_id)
                await self._gate.check(session_id, outcome, reason_code)
                result = self._desk.handle_decide(
                    operator_id, session_id, outcome, reason_code, reason_text, self._clock.now()
                )
            await self._assign()
            return result

    async def review(
        self,
        supervisor_id: int,
        session_id: str,
        outcome: str,
        reason_code: str,
        reason_text: str,
    ) -> dict[str, Any]:
        """A supervisor decides a suspended session (four-eyes, R15)."""
        async with self._locked(), self._step(asked=True):
            machine = await self._machine(session_id)
            return self._desk.handle_review(
                machine, supervisor_id, outcome, reason_code, reason_text, self._clock.now()
            )

    # -- media ------------------------------------------------------------------------

    async def media_offer(
        self, role: Role, session_id: str, operator_id: int | None, sdp: str
    ) -> str:
        """Answer a participant's WebRTC offer for their call."""
        async with self._locked():
            media = self._call_media(role, session_id, operator_id)
        return await media.answer(role, sdp)

    async def media_candidate(
        self,
        role: Role,
        session_id: str,
        operator_id: int | None,
        candidate: str,
        sdp_mid: str | None,
        index: int | None,
    ) -> None:
        media = self._call_media(role, session_id, operator_id)
        await media.add_candidate(role, candidate, sdp_mid, index)

    def _call_media(self, role: Role, session_id: str, operator_id: int | None) -> CallMedia:
        in_call = self._desk.call_operator(session_id)
        if in_call is None:
            raise MediaError("there is no call to connect to", code="no_call")
        if role == "operator" and in_call != operator_id:
            raise NotAssigned("this session is not in a call with you")
        media = self._media.get(session_id)
        if media is None:
            raise MediaError("there is no call to connect to", code="no_call")
        return media

    def analysis(self, session_id: str) -> LiveAnalysis | None:
        media = self._media.get(session_id)
        return media.analysis if media is not None else None

    def recording_failed(self, session_id: str) -> bool:
        """The session's call is not recorded (any more): a console that loads the call
        (a reload mid-call) is told, as it was told by ``recording_failed``."""
        media = self._media.get(session_id)
        return session_id in self._unrecorded or (media is not None and media.recording_failed)

    def call_of(self, operator_id: int) -> str:
        """The session in a call with this operator. Raises NotAssigned."""
        session_id = self._desk.operator_session(operator_id)
        if session_id is None or self._desk.call_operator(session_id) is None:
            raise NotAssigned("you are not in a call", code="no_call")
        return session_id

    def customer_in_call(self, session_id: str) -> bool:
        return self._desk.call_operator(session_id) is not None

    def operator_in_call(self, session_id: str) -> int | None:
        return self._desk.call_operator(session_id)

    def operator_session(self, operator_id: int) -> str | None:
        return self._desk.operator_session(operator_id)

    def snapshot(self) -> dict[str, Any]:
        return self._desk.snapshot(self._clock.now())

    def live_view(self) -> dict[str, Any]:
        """The queue, the operators and the calls now (the supervisor's dashboard)."""
        return self._desk.live_view(self._clock.now())

    def held(self) -> dict[str, int]:
        """What the center holds in memory, by kind: sessions someone is connected to,
        operators connected, customers queued, sessions whose customer is yet to be
        told a restart interrupted them, calls' media, sessions with writes kept to
        retry, work running in the background. Each stays bounded by who is connected
        (the soak and the tests watch them)."""
        return {
            **self._desk.held(),
            "media": len(self._media),
            "unsaved": len(self._unsaved),
            "unrecorded": len(self._unrecorded),
            "background": len(self._background),
        }

    # -- internals --------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Hold the lock; afterwards send what was queued, even if the step failed
        half-way (what was saved was saved, and its notifications must go out)."""
        try:
            async with self._lock:
                try:
                    yield
                finally:
                    self._desk.flush_queue(self._clock.now(), asyncio.get_running_loop().time())
                    await self._carry_out(written=False)
        finally:
            outbox, self._outbox = self._outbox, []
            for send, args in outbox:
                try:
                    await send(*args)
                except Exception:  # a notification never undoes what was saved
                    logger.exception("notification failed")

    @asynccontextmanager
    async def _step(self, *, asked: bool = False) -> AsyncIterator[float]:
        """One step of the desk, under the lock, and then its commands carried out.
        ``asked``: a step someone asked for, undone (the desk restored to a checkpoint
        taken before it) if the body raises or its write fails, which is raised.
        Otherwise what happened stays, even what the body did before raising; what of
        it could not be written is kept to retry."""
        if not asked:
            # what happened stays, even what the body did before it raised; its
            # commands are carried out when the lock is released
            yield self._clock.now()
            await self._carry_out(written=False)
            return
        checkpoint = self._desk.checkpoint()
        try:
            yield self._clock.now()
            await self._write_asked()
        except BaseException:
            self._desk.restore(checkpoint)
            raise
        await self._carry_out(written=True)

    async def _write_asked(self) -> None:
        """Write the asked step's machine first: nothing else of the step is carried
        out unless it is written."""
        for command in self._desk.queued():
            if isinstance(command, Persist) and command.asked:
                await self._persist(command.machine, command.assignment)

    async def _carry_out(self, *, written: bool) -> None:
        """Carry out the desk's commands in order; ``written``: its asked writes are
        done. One that fails is logged and the others are carried out: the step is
        taken."""
        for command in list(self._desk.commands()):
            if isinstance(command, Persist) and command.asked and not written:
                await self._persist(command.machine, command.assignment)
                continue
            try:
                await self._carry_out_one(command)
            except Exception as err:
                # the error's type only: a message may quote personal data
                logger.error("%s failed (%s)", type(command).__name__, type(err).__name__)

    async def _carry_out_one(self, command: Command) -> None:
        match command:
            case Persist(machine=machine, asked=False):
                try:
                    await self._persist(machine)
                except Exception as err:
                    self._not_saved_yet(machine.session_id, "the session's state", err)
            case Persist():
                pass  # written by the step
            case NotifyCustomer(session_id=sid, event=event, data=data):
                self._outbox.append((self._notifier.to_customer, (sid, event, data)))
            case NotifyOperator(operator_id=op, event=event, data=data):
                self._outbox.append((self._notifier.to_operator, (op, event, data)))
            case NotifyOperators(event=event, data=data):
                self._outbox.append((self._notifier.to_operators, (event, data)))
            case OpenMedia(session_id=sid, operator_id=op):
                self._open_media(sid, op)
            case CloseMedia(session_id=sid):
                await self._close_media(sid)
            case RecordGap(session_id=sid, actor=actor, gap=gap, at=at):
                await self._record_gap(sid, actor, gap, at)
            case EvidenceChanged(session_id=sid, event=event):
                if self.evidence_changed is not None:
                    self.evidence_changed(sid, event)
            case ForgetIfIdle(session_id=sid):
                self._desk.forget_if_idle(sid)
                await self._carry_out(written=False)  # its Forgotten
            case Forgotten(session_id=sid):
                self._unrecorded.discard(sid)

    async def _machine(self, session_id: str) -> IdentificationSession:
        """The session's machine: the desk's if someone is connected, else from the
        database. Raises SessionNotFound. Call under the lock."""
        machine = self._desk.machine(session_id)
        if machine is not None:
            return machine
        record = await self._repo.find_session(id=session_id)
        if record is None:
            raise SessionNotFound()
        return self._desk.machine_of(record)

    async def _persist(
        self, machine: IdentificationSession, assignment: AssignmentDrawn | None = None
    ) -> None:
        """Write the machine's unsaved events and its state (with the draw that led to
        them); if the write fails, the events stay queued in the machine."""
        events = machine.unsaved_events()
        await self._repo.save_events(
            machine.session_id,
            events,
            state=machine.state.value,
            ready_state=machine.ready_state.value,
            operator_id=machine.operator_id,
            handled_by=machine.handled_by,
            assignment=assignment,
        )
        machine.saved(len(events))

    async def _assign(self) -> None:
        """Offer waiting customers to operators drawn at random (R11), while both exist.
        An offer that cannot be written is not made (the room, the operator and the
        session stay as they were; the tick tries again), and never fails what the
        caller did: a decision saved is not reported failed for another's offer. Call
        under the lock."""
        while self._desk.can_offer():
            checkpoint = self._desk.checkpoint()
            try:
                draw = self._desk.offer_next(self._clock.now())
            except BaseException:
                self._desk.restore(checkpoint)
                raise
            if draw is None:
                return
            try:
                await self._write_asked()
            except Exception as err:
                self._desk.restore(checkpoint)
                if not self._offers_failing:
                    logger.warning(
                        "session %s: cannot offer it now (%s); tried again every second",
                        draw.session_id,
                        type(err).__name__,
                    )
                self._offers_failing = True
                return
            if self._offers_failing:
                logger.info("session %s: offers are written again", draw.session_id)
                self._offers_failing = False
            await self._carry_out(written=True)

    async def _record_gap(
        self, session_id: str, actor: str, gap: dict[str, Any], at: float
    ) -> None:
        """Record the call's gap (R12); the same recording goes on, the gap marked in it."""
        await self._write_or_keep(
            session_id,
            "a gap in the call",
            lambda: self._repo.add_item(session_id, "gap", actor, gap, at),
        )
        media = self._media.get(session_id)
        if media is not None:
            media.mark_gap(gap)

    async def _write_or_keep(self, session_id: str, what: str, write: Write) -> None:
        """Write something that happened, or keep the write for the tick to retry (after
        any kept before it: they are written in order)."""
        kept = self._unsaved.get(session_id)
        if not kept:
            try:
                await write()
                return
            except Exception as err:
                self._not_saved_yet(session_id, what, err)
        self._unsaved.setdefault(session_id, []).append((what, write))
        self._desk.writes_kept(session_id, True)

    @staticmethod
    def _not_saved_yet(session_id: str, what: str, err: Exception) -> None:
        # the error's type only: a database's message may quote personal data
        logger.warning(
            "session %s: %s is not saved yet (%s); kept in memory, written when the "
            "storage takes it",
            session_id,
            what,
            type(err).__name__,
        )

    async def _write_unsaved(self) -> None:
        """Retry what happened and was not written (under the lock): the desk's
        machines' events first, then the writes kept, each session's in order."""
        machines = {m.session_id: m for m in self._desk.machines() if m.unsaved_events()}
        for session_id in [*machines, *(s for s in self._unsaved if s not in machines)]:
            writes = self._unsaved.get(session_id, [])
            try:
                if session_id in machines:
                    await self._persist(machines[session_id])
                while writes:
                    await writes[0][1]()
                    writes.pop(0)
            except Exception:
                continue  # still refused: the next tick tries again
            self._unsaved.pop(session_id, None)
            logger.info("session %s: what was kept in memory is saved", session_id)
            self._desk.writes_kept(session_id, False)  # forgotten if nobody is connected

    def _open_media(self, session_id: str, operator_id: int) -> None:
        def recording_failed() -> None:
            # the call goes on unrecorded: its operator is told at once (they may end
            # it and have the customer join again)
            self._in_background(
                self._notifier.to_operator(
                    operator_id,
                    "recording_failed",
                    {"session_id": session_id, "reason": "recording_failed"},
                )
            )

        self._media[session_id] = CallMedia(
            session_id,
            self._media_parts,
            self._publisher(session_id, operator_id),
            recording_failed,
        )

    async def _close_media(self, session_id: str) -> None:
        media = self._media.pop(session_id, None)
        if media is None:
            return
        try:
            closed = await media.close()
        except Exception as err:  # the call ended whatever its media did
            logger.error(
                "session %s: closing the call's media failed (%s)", session_id, type(err).__name__
            )
            closed = MediaClosed(None, None)
        finally:
            if media.finishing is not None:  # a slow recording start finishes it itself
                self._in_background(media.finishing)
        if media.recording_failed:
            self._unrecorded.add(session_id)
        await self._keep(session_id, closed)

    async def _keep(self, session_id: str, closed: MediaClosed) -> None:
        """Write what the evidence keeps of a call's media (or keep it to retry)."""
        now = self._clock.now()
        recording, analysis = closed.recording, closed.analysis
        if recording is not None:
            await self._write_or_keep(
                session_id,
                "the recording's end",
                lambda: self._repo.finish_recording(
                    recording.recording_id, recording.status, recording.summary, now
                ),
            )
        if analysis is not None:
            await self._write_or_keep(
                session_id,
                "the call's analysis",
                lambda: self._repo.add_item(session_id, "analysis", "system", analysis, now),
            )

    def _in_background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background work failed", exc_info=task.exception())

    def _publisher(
        self, session_id: str, operator_id: int
    ) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        async def publish(event: str, data: dict[str, Any]) -> None:
            await self._notifier.to_operator(operator_id, event, data)
            if event == "challenge":
                current = data.get("current")
                done = data.get("done") or []
                await self._notifier.to_customer(
                    session_id,
                    "challenge",
                    {
                        "kind": current["kind"] if current else None,
                        "seconds": round(current["deadline"] - current["started"])
                        if current
                        else None,
                        "last": {"kind": done[-1]["kind"], "result": done[-1]["result"]}
                        if done
                        else None,
                    },
                )

        return publish
