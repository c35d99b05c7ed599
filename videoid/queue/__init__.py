"""The waiting room and operator presence (in-process backend)."""

from .waiting_room import AssignmentDrawn, Presence, QueueEntry, WaitingRoom

__all__ = ["AssignmentDrawn", "Presence", "QueueEntry", "WaitingRoom"]
