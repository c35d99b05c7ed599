"""What the call desk asks its driver to do (:meth:`CallDesk.next_command`).

The desk decides; the driver carries out, in the order given. A :class:`Persist` the
desk marks ``asked`` is a step someone asked for: the driver writes it before anything
else of the same step, and if the write fails it restores the desk to the checkpoint
taken before the step and reports the error to whoever asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..queue import AssignmentDrawn
from ..session import IdentificationSession


@dataclass(frozen=True)
class Persist:
    """Write the machine's unsaved events and its state (with the draw behind them)."""

    machine: IdentificationSession
    asked: bool
    """A step someone asked for: not taken unless written. Else it happened (a
    connection lost, a time run out) and the events stay queued in the machine for the
    next retry when the write fails."""
    assignment: AssignmentDrawn | None = None


@dataclass(frozen=True)
class NotifyCustomer:
    session_id: str
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class NotifyOperator:
    operator_id: int
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class NotifyOperators:
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OpenMedia:
    """The call was accepted: its peers, recording and live analysis start."""

    session_id: str
    operator_id: int


@dataclass(frozen=True)
class CloseMedia:
    """The call ended: its media close, and what the evidence keeps of them is written."""

    session_id: str


@dataclass(frozen=True)
class RecordGap:
    """A gap in the call (R12): written as an evidence item by ``actor``, and marked in
    the recording if the call's media are still on."""

    session_id: str
    actor: str
    gap: dict[str, Any]
    at: float


@dataclass(frozen=True)
class EvidenceChanged:
    """A decision, a review or a step past the decision was saved: seal again."""

    session_id: str
    event: str


@dataclass(frozen=True)
class ForgetIfIdle:
    """Once what came before is written: call :meth:`CallDesk.forget_if_idle`."""

    session_id: str


@dataclass(frozen=True)
class Forgotten:
    """Nobody is connected to the session any more and all of it is written: the desk
    holds nothing of it, nor need the driver."""

    session_id: str


Command = (
    Persist
    | NotifyCustomer
    | NotifyOperator
    | NotifyOperators
    | OpenMedia
    | CloseMedia
    | RecordGap
    | EvidenceChanged
    | ForgetIfIdle
    | Forgotten
)
