"""SQLAlchemy models. Times are epoch seconds (float), like the core's ``now``."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Operator(Base):
    __tablename__ = "operators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class OperatorLogin(Base):
    __tablename__ = "operator_logins"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)


class SessionRow(Base):
    __tablename__ = "identification_sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    state: Mapped[str] = mapped_column(String(32), index=True)
    ready_state: Mapped[str] = mapped_column(String(32))
    invite_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invite_expires_at: Mapped[float] = mapped_column(Float)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Transition(Base):
    __tablename__ = "session_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    previous: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))


class Assignment(Base):
    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    candidates: Mapped[str] = mapped_column(Text)
    """JSON list of the eligible operator ids at the draw."""
    draw_index: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("session_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(64))
    reason_text: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)
