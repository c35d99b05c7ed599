"""The call desk: the queue, the offers, the calls and their deadlines, without I/O."""

from .call_desk import CallDesk, DeskCheckpoint, DeskTimes
from .commands import (
    CloseMedia,
    Command,
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

__all__ = [
    "CallDesk",
    "CloseMedia",
    "Command",
    "DeskCheckpoint",
    "DeskTimes",
    "EvidenceChanged",
    "ForgetIfIdle",
    "Forgotten",
    "NotifyCustomer",
    "NotifyOperator",
    "NotifyOperators",
    "OpenMedia",
    "Persist",
    "RecordGap",
]
