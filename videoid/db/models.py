"""SQLAlchemy models. Times are epoch seconds (float), like the core's ``now``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
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
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """A disabled account cannot log in (migration 0016)."""
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The TOTP secret wrapped by the master key; None: no second factor enrolled."""
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The last time step whose code was accepted: a code is accepted once."""


class OperatorLogin(Base):
    __tablename__ = "operator_logins"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    """Last use, written at most once a minute (the idle timeout reads it)."""
    verified_at: Mapped[float] = mapped_column(Float)
    """The last second-factor proof of this login (decisions need a recent one)."""


class LoginChallenge(Base):
    """A password that passed, waiting for its second factor (migration 0016)."""

    __tablename__ = "login_challenges"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    """``totp`` (a code of the enrolled secret) or ``enrol`` (confirm a new secret)."""
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """``enrol``: the new secret, wrapped by the master key."""
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class RecoveryCode(Base):
    """A recovery code of the second factor, stored hashed, usable once."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("operator_id", "code_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class LoginThrottleRow(Base):
    """Login attempts counted per username and per client address (migration 0013)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    """A keyed hash of ``u:<username>`` or ``a:<address>``, never the typed text."""
    failures: Mapped[int] = mapped_column(Integer)
    """Attempts counted and not given back by a successful login."""
    free_at: Mapped[float] = mapped_column(Float)
    """No attempt is evaluated before this time."""
    at: Mapped[float] = mapped_column(Float, index=True)
    """The last counted attempt; rows long unused are forgotten."""


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    """Sealed with the customer's data key (migration 0015), ``""`` once purged."""
    phone: Mapped[str] = mapped_column(Text)
    """Sealed with the customer's data key, ``""`` once purged."""
    created_at: Mapped[float] = mapped_column(Float)
    person_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    email_index: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """Blind index of the e-mail address (R4's uniqueness), None once purged."""
    phone_index: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """Blind index of the phone number, None once purged."""


class DataKey(Base):
    """The data key of a session's or a customer's personal data (migration 0015),
    wrapped by the master key; destroyed (None) at the end of retention."""

    __tablename__ = "data_keys"
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    """``session:<id>`` or ``customer:<id>``."""
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    shredded_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SessionRow(Base):
    __tablename__ = "identification_sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    state: Mapped[str] = mapped_column(String(32), index=True)
    ready_state: Mapped[str] = mapped_column(String(32))
    invite_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invite_expires_at: Mapped[float] = mapped_column(Float)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), nullable=True)
    handled_by: Mapped[str] = mapped_column(Text, server_default="[]")
    """The operators who took its calls or decided it (a JSON list of ids): none of
    them may review it (R15)."""
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """When its personal data was destroyed at the end of retention."""


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


class Consent(Base):
    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    document: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    text_sha256: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str] = mapped_column(Text)
    """Sealed with the session's data key (an address is personal data)."""
    at: Mapped[float] = mapped_column(Float)


class StoredObject(Base):
    __tablename__ = "stored_objects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    shredded_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class CaptureAttempt(Base):
    __tablename__ = "capture_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    accepted: Mapped[bool] = mapped_column(Boolean)
    problems: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class StepResult(Base):
    __tablename__ = "step_results"
    session_id: Mapped[str] = mapped_column(
        ForeignKey("identification_sessions.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class SessionToken(Base):
    __tablename__ = "session_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``handover`` (the QR code: single use, minutes) or ``device`` (what it became)."""
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class CallItem(Base):
    __tablename__ = "call_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    """``snapshot``, ``challenge``, ``checklist``, ``otp``, ``chat``, ``analysis``, ``gap``…"""
    actor: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(Text)
    """JSON; never a code, a PIN or a key."""


class OneTimeCode(Base):
    __tablename__ = "one_time_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    binding: Mapped[str] = mapped_column(String(128))
    """What the code is for (a call; a document's digest): it checks only against that."""
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Storage order (what verification walks); ``seq`` is the chain's own number."""
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    """``operator:<id>``, ``customer``, ``system``: an id, never a name."""
    subject: Mapped[str] = mapped_column(String(64))
    """A session or object id, or empty."""
    commitment: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditDetails(Base):
    __tablename__ = "audit_details"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    details: Mapped[str] = mapped_column(Text)


class AuditAnchorRow(Base):
    __tablename__ = "audit_anchors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    """The entry anchored: the log's head then."""
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(16))
    """``seal`` or ``periodic``."""
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    """ECDSA P-256 by the anchor key in the token, over the anchor's canonical form."""
    timestamp: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The TSA's token over the signature's SHA-256."""


class EvidenceSealRow(Base):
    __tablename__ = "evidence_seals"
    session_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Claimed before the seal is written: a second claim of the same number fails."""
    at: Mapped[float] = mapped_column(Float)


class RecordingRow(Base):
    __tablename__ = "recordings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("identification_sessions.id"), index=True)
    file: Mapped[str] = mapped_column(String(255))
    """Relative to the recordings directory."""
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    """``recording``, ``complete``, ``interrupted``."""
    summary: Mapped[str] = mapped_column(Text)
    """JSON: segments, bytes, sha256, packets per stream, seconds, error."""


class LegalHold(Base):
    __tablename__ = "legal_holds"
    session_id: Mapped[str] = mapped_column(
        ForeignKey("identification_sessions.id"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(64))
    placed_at: Mapped[float] = mapped_column(Float)


class CertificateRow(Base):
    __tablename__ = "certificates"
    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    """Hexadecimal."""
    kind: Mapped[str] = mapped_column(String(16), index=True)
    """``root``, ``issuing``, ``tsa`` or ``customer``."""
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("identification_sessions.id"), nullable=True, index=True
    )
    subject: Mapped[str] = mapped_column(Text)
    key_label: Mapped[str] = mapped_column(String(64))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[float] = mapped_column(Float)
    not_after: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    """``good`` or ``revoked``."""
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    ca_url: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """Base of the CRL, OCSP and caIssuers addresses in the certificate (migration 0010;
    None for certificates issued before)."""


class SignaturePin(Base):
    __tablename__ = "signature_pins"
    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), primary_key=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    puk_hash: Mapped[str] = mapped_column(String(255))
    failures: Mapped[int] = mapped_column(Integer)
    puk_failures: Mapped[int] = mapped_column(Integer)
    locked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    blocked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    changed_at: Mapped[float] = mapped_column(Float)


class SessionSearch(Base):
    """What a compliance search matches per session (migration 0014), derived from the
    onboarding results and the call's last analysis; see ``session_search``."""

    __tablename__ = "session_search"
    session_id: Mapped[str] = mapped_column(
        ForeignKey("identification_sessions.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(256), default="")
    document: Mapped[str] = mapped_column(String(64), default="", index=True)
    step_flags: Mapped[str] = mapped_column(Text, default="")
    call_flags: Mapped[str] = mapped_column(Text, default="")
    blind: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())
    """The name and document are blind indexes (False: a row from before migration
    0015, indexed again at start-up)."""


class HealthProbe(Base):
    """The row the health check writes (migration 0018)."""

    __tablename__ = "health_probe"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
