"""Persistence: SQLAlchemy models, the repository and Alembic migrations."""

from .repository import DecisionRecord, OperatorRecord, Repository, SessionRecord

__all__ = ["DecisionRecord", "OperatorRecord", "Repository", "SessionRecord"]
