"""The identification session state machine (pure, no I/O)."""

from .events import Outcome, State
from .identification import PRE_CALL_STEPS, IdentificationSession, states_before

__all__ = ["PRE_CALL_STEPS", "IdentificationSession", "Outcome", "State", "states_before"]
