"""Events the identification session emits. Past tense, frozen; times in epoch seconds."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    CREATED = "created"
    CONSENTED = "consented"
    DOCUMENTS_CAPTURED = "documents_captured"
    DATA_CONFIRMED = "data_confirmed"
    SELFIE_TAKEN = "selfie_taken"
    AV_TESTED = "av_tested"
    WAITING = "waiting"
    ASSIGNED = "assigned"
    IN_CALL = "in_call"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CERTIFICATE_REQUESTED = "certificate_requested"
    CONTRACT_SIGNED = "contract_signed"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class StateChanged:
    """Every transition emits one; drivers persist it with its time."""

    session_id: str
    previous: State
    state: State
    at: float
    actor: str
    """Who caused it: ``customer``, ``operator:<id>``, ``system``."""


@dataclass(frozen=True)
class CustomerQueued:
    session_id: str
    at: float
    at_head: bool
    """True when re-queued at the head (the operator dropped mid-call)."""


@dataclass(frozen=True)
class CustomerLeftQueue:
    session_id: str
    at: float


@dataclass(frozen=True)
class OperatorAssigned:
    session_id: str
    operator_id: int
    at: float


@dataclass(frozen=True)
class AssignmentWithdrawn:
    session_id: str
    operator_id: int
    at: float
    reason: str


@dataclass(frozen=True)
class CallStarted:
    session_id: str
    operator_id: int
    at: float


@dataclass(frozen=True)
class CallDropped:
    session_id: str
    operator_id: int
    at: float
    by: str
    """``operator`` or ``customer``: whose connection was lost."""
    reason: str = "connection_lost"
    """``connection_lost``, or ``customer_gone``: the customer never joined the call
    the operator accepted (issue 14.9)."""


@dataclass(frozen=True)
class DecisionMade:
    session_id: str
    operator_id: int
    outcome: Outcome
    reason_code: str
    reason_text: str
    at: float


@dataclass(frozen=True)
class SessionEnded:
    """The session reached a state it cannot leave (abandoned, expired, rejected, completed)."""

    session_id: str
    state: State
    at: float


Event = (
    StateChanged
    | CustomerQueued
    | CustomerLeftQueue
    | OperatorAssigned
    | AssignmentWithdrawn
    | CallStarted
    | CallDropped
    | DecisionMade
    | SessionEnded
)
