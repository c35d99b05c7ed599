"""The waiting room and operator presence (in-process backend)."""

from .waiting_room import AssignmentDrawn, Presence, QueueEntry, RoomCheckpoint, WaitingRoom

__all__ = ["AssignmentDrawn", "Presence", "QueueEntry", "RoomCheckpoint", "WaitingRoom"]
