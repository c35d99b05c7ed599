"""The call center: the driver between the pure core (identification sessions, waiting
room) and the outside (database, Socket.IO, media).

Every change goes the same way: under one lock, feed the state machine, persist its
events, update the waiting room, and queue notifications; the notifications are sent
after the lock is released. Media negotiation runs outside the lock.

Memory changes only after its write (issue 20.8). A step someone asks for (accept,
decide, join the queue) that cannot be written is not taken: the machine is rolled
back, nothing else was touched, and the error (``storage_full`` on a full disk) goes
back to whoever asked, who may try again. A step that happened regardless (a
connection lost, a time run out) is followed in memory at once; what of it could not be
written is kept and written by the tick when the storage takes it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .analysis_pool import AnalysisPool
from .clock import Clock
from .config import Config
from .db import OperatorRecord, Repository, SessionRecord
from .errors import (
    AlreadyTaken,
    IllegalTransition,
    MediaError,
    NotAssigned,
    SessionInUse,
    SessionNotFound,
)
from .liveness.live import LiveAnalysis
from .media.call_media import CallMedia, MediaClosed, MediaParts, Role
from .queue import AssignmentDrawn, Presence, WaitingRoom
from .session import IdentificationSession, Outcome, State

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10.0
QUEUE_UPDATE_SECONDS = 1.0
"""Waiting customers and operators are told of queue changes at most this often."""


class DecisionCheck(Protocol):
    async def check(self, session_id: str, outcome: str, reason_code: str) -> None:
        """Raises to refuse the decision (a reason not on the outcome's list, the
        checklist not done)."""


class Notifier(Protocol):
    async def to_customer(self, session_id: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_operator(self, operator_id: int, event: str, data: dict[str, Any]) -> None: ...

    async def to_operators(self, event: str, data: dict[str, Any]) -> None: ...


@dataclass
class LiveSession:
    """A session some participant is connected to, held in memory while it is."""

    machine: IdentificationSession
    customer_sid: str | None = None
    offer_deadline: float | None = None
    media: CallMedia | None = None
    """The call's peers, recording and live analysis, while it is on."""
    recording_failed: bool = False
    """A call of this session went unrecorded (kept after its media closed)."""
    last_queue_info: tuple[int, float] | None = None
    customer_gone_at: float | None = None
    """When the customer's connection dropped mid-call (R12), while they may come back:
    to the call, or to the head of the queue when the operator dropped meanwhile."""
    unsaved: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)
    """Writes of what happened (a gap, the call's analysis) the storage refused: what
    each is, and the write; the tick retries them in order."""

    @property
    def has_unsaved(self) -> bool:
        """Something that happened is not written yet (the machine's events included)."""
        return bool(self.unsaved or self.machine.unsaved_events())


@dataclass
class OperatorLink:
    operator: OperatorRecord
    sid: str
    wants: Presence = Presence.PAUSED
    """What the operator chose: available or paused."""
    session_id: str | None = None
    """The session offered to them or in their call."""


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
        self._media = media
        self._gate = gate
        self._config = config
        self._notifier = notifier
        self._clock = clock
        self._room = WaitingRoom(
            rng or random.SystemRandom(), initial_handle_seconds=config.queue.initial_handle_seconds
        )
        self._live: dict[str, LiveSession] = {}
        self._operators: dict[int, OperatorLink] = {}
        self._lock = asyncio.Lock()
        self._outbox: list[tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]] = []
        self._queue_dirty = False
        self._interrupted: set[str] = set()
        """Sessions a start found waiting or in a call: their customer is told once."""
        self._queue_told_at = -QUEUE_UPDATE_SECONDS
        self.ice = media.ice
        """The server's ICE rules and the clients' STUN/TURN servers (credentials)."""
        self.required_steps = required_steps
        self.evidence_changed = evidence_changed
        self._background: set[asyncio.Task[Any]] = set()
        self._offers_failing = False
        """The last offer could not be written (logged once until one is again)."""

    @property
    def live_pool(self) -> AnalysisPool | None:
        """Where the customer's live video is analysed; None when the analysis is off."""
        return self._media.live_pool

    @property
    def match_pool(self) -> AnalysisPool | None:
        return self._media.match_pool

    # -- start and stop ---------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart nobody is connected: sessions left waiting or in a call go back
        to the state in which the customer may queue again, recorded (and audited, in
        the same transaction) as a transition by ``system``; recordings left open are
        closed as interrupted (audited ``recording_interrupted``)."""
        self._room.seed_call_lengths(await self._repo.recent_call_lengths())
        for recording_id, sid in await self._repo.interrupt_recordings(self._clock.now()):
            logger.warning(
                "session %s: recording %s was interrupted (the server stopped)", sid, recording_id
            )
        stale = (State.WAITING.value, State.ASSIGNED.value, State.IN_CALL.value)
        for record in await self._repo.sessions_in(stale):
            machine = self._machine(record)
            machine.interrupted(self._clock.now())
            await self._persist(machine)  # audited with it: a system transition
            self._interrupted.add(record.id)  # its customer is told, when back
            logger.info("session %s: recovered to %s after restart", record.id, machine.state.value)

    async def close(self) -> None:
        async with self._lock:
            for live in self._live.values():
                await self._close_peers(live)
            await self._write_unsaved()
            for live in self._live.values():
                lost = [what for what, _ in live.unsaved]
                if live.machine.unsaved_events():
                    lost.insert(0, "the session's state")
                if lost:
                    # the next start finds the session as last written and recovers it
                    logger.error(
                        "session %s: not saved as the server stops: %s",
                        live.machine.session_id,
                        ", ".join(lost),
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
            now = self._clock.now()
            call = self._config.call
            for live in list(self._live.values()):
                machine = live.machine
                if machine.state is State.IN_CALL and self._customer_media_connected(live):
                    machine.customer_joined(now)
                deadline = machine.connect_deadline(call.connect_seconds)
                if deadline is not None and deadline <= now:
                    await self._customer_gone(live)
                    continue
                if (
                    live.machine.state is State.ASSIGNED
                    and live.offer_deadline is not None
                    and live.offer_deadline <= now
                ):
                    operator_id = live.machine.operator_id
                    await self._withdraw(live, "offer_timeout", pause_operator=True)
                    logger.info(
                        "session %s: offer to operator %s timed out",
                        live.machine.session_id,
                        operator_id,
                    )
                if (
                    live.customer_gone_at is not None
                    and live.customer_sid is None
                    and now - live.customer_gone_at >= call.reconnect_seconds
                ):
                    if machine.state is State.IN_CALL:
                        await self._record_gap(live, "system", resumed=False)
                    else:  # queued (the operator dropped meanwhile): leaves the queue
                        logger.info(
                            "session %s: the customer did not come back", machine.session_id
                        )
                    live.customer_gone_at = None
                    await self._customer_leaves(live)
                    self._forget_if_idle(live)
            await self._assign()
        for live in list(self._live.values()):
            if live.media is not None:
                await live.media.tick()

    # -- customers --------------------------------------------------------------------

    async def customer_connected(
        self, record: SessionRecord, sid: str
    ) -> tuple[dict[str, Any], str | None]:
        """Returns the customer's view, and the connection this one replaces (to close):
        in a call, a new connection takes over from one that has not noticed it died."""
        async with self._locked():
            live = self._live.get(record.id)
            if live is None:
                live = self._live[record.id] = LiveSession(self._machine(record))
            replaced = None
            if live.customer_sid is not None and live.customer_sid != sid:
                if live.machine.state is not State.IN_CALL:
                    raise SessionInUse()
                replaced = live.customer_sid
            if live.machine.state is State.IN_CALL and (
                live.customer_gone_at is not None or replaced is not None
            ):
                await self._customer_back(live)
            elif live.customer_gone_at is not None:
                # back to the place in the queue the dropped call left them (issue 14.9)
                live.customer_gone_at = None
                if record.id in self._room:
                    self._room.set_connected(record.id, True)
                    self._queue_changed()
                    await self._assign()
            # the connection is theirs only once all of the above went through: a
            # failure leaves no connection registered that will never disconnect
            live.customer_sid = sid
            view = self._customer_view(live)
            if record.id in self._interrupted and live.machine.state is not State.IN_CALL:
                self._interrupted.discard(record.id)
                if live.machine.state is not State.WAITING:
                    view["interrupted"] = True  # the page says what happened, once
            return view, replaced

    async def customer_disconnected(self, session_id: str, sid: str) -> None:
        async with self._locked():
            live = self._live.get(session_id)
            if live is None or live.customer_sid != sid:
                return
            live.customer_sid = None
            window = self._config.call.reconnect_seconds
            if live.machine.state is State.IN_CALL and window > 0:
                # the same operator keeps the call for a while: the page reconnects by itself
                live.customer_gone_at = self._clock.now()
                operator_id = live.machine.operator_id
                assert operator_id is not None
                self._notify_operator(
                    operator_id,
                    "customer_reconnecting",
                    {"session_id": session_id, "seconds": window},
                )
                logger.info("session %s: customer dropped; waiting %s s", session_id, window)
                return
            await self._customer_leaves(live)
            self._forget_if_idle(live)

    async def _customer_back(self, live: LiveSession) -> None:
        """The customer reconnected mid-call: the gap is recorded (R12)."""
        gap = await self._record_gap(live, "customer", resumed=True)
        live.customer_gone_at = None
        sid = live.machine.session_id
        operator_id = live.machine.operator_id
        if operator_id is not None:
            self._notify_operator(operator_id, "customer_back", {"session_id": sid, **gap})
        logger.info("session %s: customer back after %.1f s", sid, gap["seconds"])

    async def _record_gap(self, live: LiveSession, actor: str, *, resumed: bool) -> dict[str, Any]:
        """Record the call's gap from the customer's drop until now (R12); the same
        recording goes on, the gap marked in it."""
        now = self._clock.now()
        gone = live.customer_gone_at if live.customer_gone_at is not None else now
        gap = {"from": gone, "to": now, "seconds": round(now - gone, 3), "resumed": resumed}
        sid = live.machine.session_id
        await self._write_or_keep(
            live, "a gap in the call", lambda: self._repo.add_item(sid, "gap", actor, gap, now)
        )
        if live.media is not None:
            live.media.mark_gap(gap)
        return gap

    async def _customer_gone(self, live: LiveSession) -> None:
        """The customer did not join the call within ``call.connect_seconds`` of the
        accept (issue 14.9): the operator gets ``call_ended`` ``customer_gone`` and is
        released; the session goes back to where its customer may queue again."""
        machine = live.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        now, connect_seconds = self._clock.now(), self._config.call.connect_seconds
        await self._happened(live, lambda m: m.customer_gone(now, connect_seconds=connect_seconds))
        if live.customer_gone_at is not None:  # their connection dropped meanwhile
            await self._record_gap(live, "system", resumed=False)
            live.customer_gone_at = None
        await self._close_peers(live)
        self._release_operator(operator_id)
        sid = machine.session_id
        logger.info("session %s: the customer did not join operator %d's call", sid, operator_id)
        self._notify_operator(
            operator_id, "call_ended", {"session_id": sid, "reason": "customer_gone"}
        )
        # a page still connected learns the call ended, then where it continues from
        self._notify_customer(
            sid, "call_ended", {"reason": "customer_gone", "state": machine.state.value}
        )
        self._notify_customer(sid, "state", self._customer_view(live))
        self._forget_if_idle(live)
        self._queue_changed()

    @staticmethod
    def _customer_media_connected(live: LiveSession) -> bool:
        return live.media is not None and live.media.customer_connected

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
        async with self._locked():
            live, machine = await self._session_machine(session_id)
            allowed = tuple(allowed)
            if machine.state not in allowed:
                raise IllegalTransition(
                    f"this step cannot be done now (the session is {machine.state.value})",
                    code="step_not_allowed",
                )
            result = await save()
            if complete is not None or advance is not None:
                now = self._clock.now()

                def move(machine: IdentificationSession) -> None:
                    if complete is not None:
                        machine.complete_step(complete, now)
                    if advance is not None:  # after the decision: certificate, contract
                        advance(machine, now)

                await self._change(machine, move)
                if advance is not None and self.evidence_changed is not None:
                    self.evidence_changed(session_id, machine.state.value)
                if live is not None:
                    self._outbox.append(
                        (
                            self._notifier.to_customer,
                            (session_id, "state", self._customer_view(live)),
                        )
                    )
            return result

    async def join_queue(self, session_id: str) -> dict[str, Any]:
        async with self._locked():
            live = self._get(session_id)
            now = self._clock.now()
            await self._change(live.machine, lambda m: m.enter_queue(now))
            self._room.add(session_id, now)
            await self._assign()
            return self._customer_view(live)

    async def leave_queue(self, session_id: str) -> dict[str, Any]:
        async with self._locked():
            live = self._get(session_id)
            if live.machine.state not in (State.WAITING, State.ASSIGNED):
                live.machine.leave_queue(self._clock.now())  # raises IllegalTransition
            await self._customer_leaves(live, asked=True)
            return self._customer_view(live)

    # -- operators --------------------------------------------------------------------

    async def operator_connected(self, operator: OperatorRecord, sid: str) -> dict[str, Any]:
        async with self._locked():
            link = self._operators.get(operator.id)
            if link is not None and link.sid != sid:
                raise SessionInUse("you are already connected in another tab")
            self._operators[operator.id] = OperatorLink(operator, sid)
            self._room.set_presence(operator.id, Presence.PAUSED)
            self._queue_changed()
            return {
                "operator": {
                    "id": operator.id,
                    "username": operator.username,
                    "role": operator.role,
                },
                "presence": Presence.PAUSED.value,
            }

    async def operator_disconnected(self, operator_id: int, sid: str) -> None:
        async with self._locked():
            link = self._operators.get(operator_id)
            if link is None or link.sid != sid:
                return
            try:
                live = self._live.get(link.session_id) if link.session_id else None
                if live is not None and live.machine.operator_id == operator_id:
                    if live.machine.state is State.ASSIGNED:
                        await self._withdraw(live, "operator_left", pause_operator=False)
                    elif live.machine.state is State.IN_CALL:
                        await self._drop_call(live, by="operator")
            finally:
                # the connection is gone whatever became of the writes above: left
                # registered, it would keep the operator out ("already connected in
                # another tab") until a restart
                del self._operators[operator_id]
                self._room.set_presence(operator_id, Presence.OFFLINE)
                self._queue_changed()
            await self._assign()

    async def set_presence(self, operator_id: int, status: str) -> dict[str, Any]:
        async with self._locked():
            link = self._operators[operator_id]
            link.wants = Presence(status)
            if self._room.presence(operator_id) in (Presence.AVAILABLE, Presence.PAUSED):
                self._room.set_presence(operator_id, link.wants)
            self._queue_changed()
            await self._assign()
            return {"presence": self._room.presence(operator_id).value}

    async def accept(self, operator_id: int, session_id: str) -> dict[str, Any]:
        async with self._locked():
            live = self._live.get(session_id)
            if live is None:  # never offered (to anyone): nothing to tell of it
                raise NotAssigned()
            machine = live.machine
            if machine.state is State.IN_CALL or (
                machine.state is State.ASSIGNED and machine.operator_id != operator_id
            ):
                raise AlreadyTaken()
            if machine.state is not State.ASSIGNED:
                raise NotAssigned()
            now = self._clock.now()
            await self._change(machine, lambda m: m.start_call(operator_id, now))
            live.offer_deadline = None
            self._room.set_presence(operator_id, Presence.BUSY)
            self._open_peers(live, operator_id)
            link = self._operators[operator_id]
            self._notify_customer(
                session_id,
                "call_started",
                {
                    "operator": {"display_name": link.operator.username},
                    **self.ice.client_ice(session_id, now, customer=True),
                },
            )
            self._queue_changed()
            return {
                "session_id": session_id,
                "state": machine.state.value,
                **self.ice.client_ice(f"staff-{operator_id}", now, customer=False),
            }

    async def decline(self, operator_id: int, session_id: str) -> dict[str, Any]:
        async with self._locked():
            live = self._live.get(session_id)
            if (
                live is None
                or live.machine.state is not State.ASSIGNED
                or live.machine.operator_id != operator_id
            ):
                raise NotAssigned()
            await self._withdraw(live, "declined", pause_operator=True, asked=True)
            await self._assign()
            return {"presence": self._room.presence(operator_id).value}

    async def decide(
        self, operator_id: int, session_id: str, outcome: str, reason_code: str, reason_text: str
    ) -> dict[str, Any]:
        async with self._locked():
            live = self._live.get(session_id)
            if live is None or live.machine.operator_id != operator_id:
                raise NotAssigned("this session is not in a call with you")
            if live.machine.state is not State.IN_CALL:
                raise IllegalTransition(
                    f"decide is not allowed while the session is {live.machine.state.value}"
                )
            await self._gate.check(session_id, outcome, reason_code)
            now = self._clock.now()
            started = live.machine.call_started_at
            # refused by the storage, the decision is not taken: the call goes on, and
            # the same decision may be sent again
            await self._change(
                live.machine,
                lambda m: m.decide(operator_id, Outcome(outcome), reason_code, reason_text, now),
            )
            if started is not None:
                self._room.record_call_length(now - started)
            await self._close_peers(live)
            self._release_operator(operator_id)
            if self.evidence_changed is not None:
                self.evidence_changed(session_id, "decision")
            self._notify_customer(
                session_id, "outcome", {"outcome": outcome, "state": live.machine.state.value}
            )
            if outcome == Outcome.SUSPENDED.value:
                self._outbox.append((self._notifier.to_operators, ("reviews_changed", {})))
            self._forget_if_idle(live)
            self._queue_changed()
            await self._assign()
            return {"session_id": session_id, "state": live.machine.state.value}

    async def review(
        self,
        supervisor_id: int,
        session_id: str,
        outcome: str,
        reason_code: str,
        reason_text: str,
    ) -> dict[str, Any]:
        """A supervisor decides a suspended session (four-eyes, R15)."""
        async with self._locked():
            _, machine = await self._session_machine(session_id)
            now = self._clock.now()
            await self._change(
                machine,
                lambda m: m.review(supervisor_id, Outcome(outcome), reason_code, reason_text, now),
            )
            if self.evidence_changed is not None:
                self.evidence_changed(session_id, "review")
            self._notify_customer(
                session_id, "outcome", {"outcome": outcome, "state": machine.state.value}
            )
            self._outbox.append((self._notifier.to_operators, ("reviews_changed", {})))
            return {"session_id": session_id, "state": machine.state.value}

    # -- media ------------------------------------------------------------------------

    async def media_offer(
        self, role: Role, session_id: str, operator_id: int | None, sdp: str
    ) -> str:
        """Answer a participant's WebRTC offer for their call."""
        async with self._locked():
            live = self._live.get(session_id)
            if live is None or live.machine.state is not State.IN_CALL:
                raise MediaError("there is no call to connect to", code="no_call")
            if role == "operator" and live.machine.operator_id != operator_id:
                raise NotAssigned("this session is not in a call with you")
            media = live.media
            if media is None:
                raise MediaError("there is no call to connect to", code="no_call")
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
        live = self._live.get(session_id)
        media = live.media if live is not None else None
        if (
            live is None
            or media is None
            or (role == "operator" and live.machine.operator_id != operator_id)
        ):
            raise MediaError("there is no call to connect to", code="no_call")
        await media.add_candidate(role, candidate, sdp_mid, index)

    def analysis(self, session_id: str) -> LiveAnalysis | None:
        live = self._live.get(session_id)
        return live.media.analysis if live is not None and live.media is not None else None

    def recording_failed(self, session_id: str) -> bool:
        """The session's call is not recorded (any more): a console that loads the call
        (a reload mid-call) is told, as it was told by ``recording_failed``."""
        live = self._live.get(session_id)
        if live is None:
            return False
        return live.recording_failed or (live.media is not None and live.media.recording_failed)

    def call_of(self, operator_id: int) -> str:
        """The session in a call with this operator. Raises NotAssigned."""
        link = self._operators.get(operator_id)
        live = self._live.get(link.session_id) if link and link.session_id else None
        if live is None or live.machine.state is not State.IN_CALL:
            raise NotAssigned("you are not in a call", code="no_call")
        return live.machine.session_id

    def customer_in_call(self, session_id: str) -> bool:
        live = self._live.get(session_id)
        return live is not None and live.machine.state is State.IN_CALL

    def operator_in_call(self, session_id: str) -> int | None:
        live = self._live.get(session_id)
        if live is None or live.machine.state is not State.IN_CALL:
            return None
        return live.machine.operator_id

    def operator_session(self, operator_id: int) -> str | None:
        link = self._operators.get(operator_id)
        return link.session_id if link else None

    # -- internals --------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self) -> Any:
        """Hold the lock; afterwards send what was queued, even if the step failed
        half-way (what was saved was saved, and its notifications must go out)."""
        try:
            async with self._lock:
                try:
                    yield
                finally:
                    self._flush_queue()
        finally:
            outbox, self._outbox = self._outbox, []
            for send, args in outbox:
                try:
                    await send(*args)
                except Exception:  # a notification never undoes what was saved
                    logger.exception("notification failed")

    def _machine(self, record: SessionRecord) -> IdentificationSession:
        return IdentificationSession(
            record.id,
            state=State(record.state),
            required_steps=self.required_steps,
            operator_id=record.operator_id,
            ready_state=State(record.ready_state),
            handled_by=record.handled_by,
        )

    async def _session_machine(
        self, session_id: str
    ) -> tuple[LiveSession | None, IdentificationSession]:
        """The session's machine: the live one if someone is connected, else from the
        database. Raises SessionNotFound. Call under the lock."""
        live = self._live.get(session_id)
        if live is not None:
            return live, live.machine
        record = await self._repo.find_session(id=session_id)
        if record is None:
            raise SessionNotFound()
        return None, self._machine(record)

    def _get(self, session_id: str) -> LiveSession:
        live = self._live.get(session_id)
        if live is None:
            raise SessionNotFound()
        return live

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

    async def _change(
        self,
        machine: IdentificationSession,
        step: Callable[[IdentificationSession], None],
        assignment: AssignmentDrawn | None = None,
    ) -> None:
        """A step someone asked for, taken only if written: when the write fails the
        machine is as it was before the step and the error is raised (to the operator:
        ``storage_full``), so that the same step may be tried again later."""
        before = machine.checkpoint()
        try:
            step(machine)
            await self._persist(machine, assignment)
        except BaseException:
            machine.roll_back(before)
            raise

    async def _happened(
        self, live: LiveSession, step: Callable[[IdentificationSession], None]
    ) -> None:
        """A step that happened whether or not it can be written (a connection lost, a
        time run out): memory follows it at once, so that it matches the world; if the
        write fails its events stay queued in the machine for the tick to write. An
        illegal step raises before anything changes."""
        step(live.machine)
        try:
            await self._persist(live.machine)
        except Exception as err:
            self._not_saved_yet(live, "the session's state", err)

    async def _write_or_keep(
        self, live: LiveSession, what: str, write: Callable[[], Awaitable[Any]]
    ) -> None:
        """Write something that happened, or keep the write for the tick to retry (after
        any kept before it: they are written in order)."""
        if not live.unsaved:
            try:
                await write()
                return
            except Exception as err:
                self._not_saved_yet(live, what, err)
        live.unsaved.append((what, write))

    @staticmethod
    def _not_saved_yet(live: LiveSession, what: str, err: Exception) -> None:
        # the error's type only: a database's message may quote personal data
        logger.warning(
            "session %s: %s is not saved yet (%s); kept in memory, written when the "
            "storage takes it",
            live.machine.session_id,
            what,
            type(err).__name__,
        )

    async def _write_unsaved(self) -> None:
        """Retry what happened and was not written (under the lock)."""
        for live in list(self._live.values()):
            if not live.has_unsaved:
                continue
            try:
                if live.machine.unsaved_events():
                    await self._persist(live.machine)
                while live.unsaved:
                    await live.unsaved[0][1]()
                    live.unsaved.pop(0)
            except Exception:
                continue  # still refused: the next tick tries again
            logger.info("session %s: what was kept in memory is saved", live.machine.session_id)
            self._forget_if_idle(live)

    async def _customer_leaves(self, live: LiveSession, *, asked: bool = False) -> None:
        """The customer leaves the queue or the call: ``asked`` (they pressed leave),
        refused when it cannot be written; else their connection is gone, which is
        followed in memory whether written or not."""
        machine, now = live.machine, self._clock.now()

        def leave(machine: IdentificationSession) -> None:
            machine.leave_queue(now)

        if machine.state is State.WAITING:
            await (self._change(machine, leave) if asked else self._happened(live, leave))
            self._room.remove(machine.session_id)
        elif machine.state is State.ASSIGNED:
            operator_id = machine.operator_id
            await (self._change(machine, leave) if asked else self._happened(live, leave))
            live.offer_deadline = None
            if operator_id is not None:
                self._release_operator(operator_id)
                self._notify_operator(
                    operator_id,
                    "assignment_withdrawn",
                    {"session_id": machine.session_id, "reason": "customer_left"},
                )
        elif machine.state is State.IN_CALL:
            await self._drop_call(live, by="customer")
        else:
            return
        self._queue_changed()
        await self._assign()

    async def _withdraw(
        self, live: LiveSession, reason: str, *, pause_operator: bool, asked: bool = False
    ) -> None:
        """Take back an offer: the customer returns to the head of the queue. ``asked``
        (the operator declined): refused when it cannot be written; else (timed out,
        the operator gone) followed in memory whether written or not."""
        machine = live.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        now = self._clock.now()

        def withdraw(machine: IdentificationSession) -> None:
            machine.withdraw_assignment(now, reason=reason)

        await (self._change(machine, withdraw) if asked else self._happened(live, withdraw))
        live.offer_deadline = None
        self._room.add(machine.session_id, now, at_head=True)
        live.last_queue_info = None  # back in the queue: told where, even if unchanged
        link = self._release_operator(operator_id)
        if link is not None and pause_operator:
            link.wants = Presence.PAUSED
            self._room.set_presence(operator_id, Presence.PAUSED)
        self._notify_operator(
            operator_id,
            "assignment_withdrawn",
            {
                "session_id": machine.session_id,
                "reason": reason,
                "presence": self._room.presence(operator_id).value,
            },
        )
        self._queue_changed()

    async def _drop_call(self, live: LiveSession, *, by: str) -> None:
        """A participant's connection was lost mid-call: followed in memory whether
        written or not (it happened)."""
        machine = live.machine
        operator_id = machine.operator_id
        assert operator_id is not None
        now = self._clock.now()
        await self._happened(live, lambda m: m.drop_call(now, by=by))
        customer_here = live.customer_sid is not None
        if by == "operator" and not customer_here:
            # the customer dropped too and may still come back (R12): the call's gap ends
            # here; their place at the head waits for them until the window runs out, and
            # is not offered meanwhile (issue 14.9)
            if live.customer_gone_at is not None:
                await self._record_gap(live, "system", resumed=False)
            else:
                live.customer_gone_at = now
        else:
            live.customer_gone_at = None
        await self._close_peers(live)
        if by == "operator":
            self._room.add(machine.session_id, now, at_head=True, connected=customer_here)
            live.last_queue_info = None  # back in the queue: told where, even if unchanged
            self._notify_customer(
                machine.session_id,
                "call_ended",
                {"reason": "operator_left", "state": machine.state.value},
            )
        else:
            self._notify_operator(
                operator_id,
                "call_ended",
                {"session_id": machine.session_id, "reason": "customer_left"},
            )
            self._release_operator(operator_id)
        self._queue_changed()

    def _release_operator(self, operator_id: int) -> OperatorLink | None:
        link = self._operators.get(operator_id)
        if link is not None:
            link.session_id = None
            self._room.set_presence(operator_id, link.wants)
        return link

    async def _assign(self) -> None:
        """Offer waiting customers to operators drawn at random (R11), while both exist.
        An offer that cannot be written is not made (the room, the operator and the
        session stay as they were; the tick tries again), and never fails what the
        caller did: a decision saved is not reported failed for another's offer."""
        while (draw := self._room.choose(self._clock.now())) is not None:
            if not await self._offer(draw):
                return

    async def _offer(self, draw: AssignmentDrawn) -> bool:
        """Carry out a draw once written; whether it was."""
        live = self._live[draw.session_id]
        try:
            await self._change(live.machine, lambda m: m.assign(draw.operator_id, draw.at), draw)
        except Exception as err:
            if not self._offers_failing:
                logger.warning(
                    "session %s: cannot offer it now (%s); tried again every second",
                    draw.session_id,
                    type(err).__name__,
                )
            self._offers_failing = True
            return False
        if self._offers_failing:
            logger.info("session %s: offers are written again", draw.session_id)
            self._offers_failing = False
        self._room.take(draw)
        live.offer_deadline = draw.at + self._config.operators.offer_timeout_seconds
        self._operators[draw.operator_id].session_id = draw.session_id
        logger.info(
            "session %s: offered to operator %d (drawn %d of %d)",
            draw.session_id,
            draw.operator_id,
            draw.index + 1,
            len(draw.candidates),
        )
        self._notify_operator(
            draw.operator_id,
            "assignment_offered",
            {
                "session_id": draw.session_id,
                "timeout_seconds": self._config.operators.offer_timeout_seconds,
            },
        )
        self._notify_customer(draw.session_id, "assigned", {"state": State.ASSIGNED.value})
        self._queue_changed()
        return True

    def _queue_changed(self) -> None:
        """The queue changed: waiting customers and operators are told when the lock is
        next released, at most once a second (100 customers joining at once make one
        update each, not a hundred)."""
        self._queue_dirty = True

    def _flush_queue(self) -> None:
        """Tell waiting customers whose position or estimate changed, and all operators."""
        now = asyncio.get_running_loop().time()
        if not self._queue_dirty or now - self._queue_told_at < QUEUE_UPDATE_SECONDS:
            return  # the tick comes back within the second
        self._queue_dirty, self._queue_told_at = False, now
        for entry in self._room.entries():
            live = self._live.get(entry.session_id)
            if live is None:
                continue
            info = (
                self._room.position(entry.session_id),
                self._room.estimated_wait_seconds(entry.session_id),
            )
            if info != live.last_queue_info:
                live.last_queue_info = info
                self._notify_customer(
                    entry.session_id,
                    "queue",
                    {"position": info[0], "estimated_wait_seconds": info[1]},
                )
        self._outbox.append((self._notifier.to_operators, ("queue_snapshot", self.snapshot())))

    def snapshot(self) -> dict[str, Any]:
        now = self._clock.now()
        return {
            "waiting": [
                {
                    "session_id": e.session_id,
                    "position": i,
                    "waiting_seconds": round(now - e.since, 1),
                    "customer_connected": self._room.is_connected(e.session_id),
                }
                for i, e in enumerate(self._room.entries(), start=1)
            ],
            "operators": {
                p.value: len(self._room.operators_with(p))
                for p in Presence
                if p is not Presence.OFFLINE
            },
        }

    def live_view(self) -> dict[str, Any]:
        """The queue, the operators and the calls now (the supervisor's dashboard)."""
        now = self._clock.now()
        entries = self._room.entries()
        return {
            "waiting": len(entries),
            "longest_wait_seconds": round(max((now - e.since for e in entries), default=0.0), 1),
            "calls": sum(1 for lv in self._live.values() if lv.machine.state is State.IN_CALL),
            "operators": [
                {
                    "id": link.operator.id,
                    "username": link.operator.username,
                    "role": link.operator.role,
                    "presence": self._room.presence(op_id).value,
                    "session_id": link.session_id,
                }
                for op_id, link in sorted(self._operators.items())
            ],
        }

    def held(self) -> dict[str, int]:
        """What the center holds in memory, by kind: sessions someone is connected to,
        operators connected, customers queued, sessions whose customer is yet to be
        told a restart interrupted them, work running in the background. Each stays
        bounded by who is connected (the soak and the tests watch them)."""
        return {
            "sessions": len(self._live),
            "operators": len(self._operators),
            "queued": len(self._room),
            "interrupted": len(self._interrupted),
            "background": len(self._background),
        }

    def _customer_view(self, live: LiveSession) -> dict[str, Any]:
        view: dict[str, Any] = {
            "session_id": live.machine.session_id,
            "state": live.machine.state.value,
        }
        if live.machine.session_id in self._room:
            view["position"] = self._room.position(live.machine.session_id)
            view["estimated_wait_seconds"] = self._room.estimated_wait_seconds(
                live.machine.session_id
            )
            live.last_queue_info = (view["position"], view["estimated_wait_seconds"])
        elif live.machine.state is State.ASSIGNED:
            view["position"], view["estimated_wait_seconds"] = 1, 0.0  # an operator is coming
        elif live.machine.state is State.IN_CALL:
            link = self._operators.get(live.machine.operator_id or -1)
            view["operator"] = {"display_name": link.operator.username if link else ""}
            view.update(
                self.ice.client_ice(live.machine.session_id, self._clock.now(), customer=True)
            )
        return view

    def _open_peers(self, live: LiveSession, operator_id: int) -> None:
        sid = live.machine.session_id

        def recording_failed() -> None:
            # the call goes on unrecorded: its operator is told at once (they may end
            # it and have the customer join again)
            self._in_background(
                self._notifier.to_operator(
                    operator_id,
                    "recording_failed",
                    {"session_id": sid, "reason": "recording_failed"},
                )
            )

        live.media = CallMedia(
            sid, self._media, self._publisher(sid, operator_id), recording_failed
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

    async def _close_peers(self, live: LiveSession) -> None:
        media, live.media = live.media, None
        if media is not None:
            closed = await media.close()
            live.recording_failed |= media.recording_failed
            if media.finishing is not None:  # a slow recording start finishes it itself
                self._in_background(media.finishing)
            await self._keep(live, closed)

    async def _keep(self, live: LiveSession, closed: MediaClosed) -> None:
        """Write what the evidence keeps of a call's media (or keep it to retry)."""
        sid, now = live.machine.session_id, self._clock.now()
        recording, analysis = closed.recording, closed.analysis
        if recording is not None:
            await self._write_or_keep(
                live,
                "the recording's end",
                lambda: self._repo.finish_recording(
                    recording.recording_id, recording.status, recording.summary, now
                ),
            )
        if analysis is not None:
            await self._write_or_keep(
                live,
                "the call's analysis",
                lambda: self._repo.add_item(sid, "analysis", "system", analysis, now),
            )

    def _forget_if_idle(self, live: LiveSession) -> None:
        """Forget a session nobody is connected to, unless some of it is not saved yet
        (the tick writes it, then forgets it)."""
        if (
            live.customer_sid is None
            and not live.has_unsaved
            and live.machine.state
            not in (
                State.WAITING,
                State.ASSIGNED,
                State.IN_CALL,
            )
        ):
            self._live.pop(live.machine.session_id, None)

    def _notify_customer(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        self._outbox.append((self._notifier.to_customer, (session_id, event, data)))

    def _notify_operator(self, operator_id: int, event: str, data: dict[str, Any]) -> None:
        self._outbox.append((self._notifier.to_operator, (operator_id, event, data)))
