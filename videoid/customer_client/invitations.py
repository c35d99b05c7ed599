"""Invitations: a provider creates a session for one customer and gets a link.

The link carries a 256-bit token in its fragment (``/join#<token>``), so that it never
reaches a server log or a Referer header; the database keeps only its hash."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..access import POST_CALL, customer_access_until
from ..config import Config
from ..db import Repository, SessionRecord
from ..errors import ConfigError, InvitationError, InvitationExpired, ValidationError
from ..session import PRE_CALL_STEPS, State
from ..tokens import new_token, token_hash

logger = logging.getLogger(__name__)

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,185}\.[^@\s]{2,}$")
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
"""E.164."""


class AccessExpired(InvitationError):
    """This identification has ended; its link no longer opens it."""

    code = "access_expired"


@dataclass(frozen=True)
class Invitation:
    session_id: str
    token: str
    url: str
    expires_at: float


def check_contacts(email: str, phone: str) -> tuple[str, str]:
    email, phone = email.strip(), re.sub(r"[\s()-]", "", phone)
    if not EMAIL.match(email):
        raise ValidationError("email: not a valid address", code="invalid_email", field="email")
    if not PHONE.match(phone):
        raise ValidationError(
            "phone: international format, e.g. +393471234567",
            code="invalid_phone",
            field="phone",
        )
    return email, phone


def required_steps(config: Config) -> tuple[State, ...]:
    """The configured pre-call steps, checked against the ones that exist."""
    names = {s.value: s for s in PRE_CALL_STEPS}
    unknown = [n for n in config.onboarding.required_steps if n not in names]
    if unknown:
        raise ConfigError(
            f"onboarding.required_steps: unknown step {unknown[0]!r} (known: {', '.join(names)})"
        )
    return tuple(s for s in PRE_CALL_STEPS if s.value in config.onboarding.required_steps)


class Invitations:
    def __init__(self, repo: Repository, config: Config) -> None:
        """The deployment's required steps come from ``config`` (the server and the
        command line make the same sessions). Raises ConfigError for an unknown step."""
        self._repo = repo
        self._config = config
        self.required_steps = required_steps(config)

    async def create(self, email: str, phone: str, now: float, base_url: str) -> Invitation:
        email, phone = check_contacts(email, phone)
        token = new_token()
        expires_at = now + self._config.invitations.ttl_hours * 3600
        ready = self.required_steps[-1] if self.required_steps else State.CREATED
        session_id = await self._repo.create_session(
            email=email,
            phone=phone,
            token_hash=token_hash(token),
            ready_state=ready.value,
            now=now,
            expires_at=expires_at,
        )
        logger.info("session %s: invitation created", session_id)
        return Invitation(session_id, token, f"{base_url}/join#{token}", expires_at)

    async def resolve(self, token: object, now: float) -> SessionRecord:
        """The session an invitation token opens. Raises :class:`InvitationError`."""
        if not isinstance(token, str) or not 20 <= len(token) <= 128:
            raise InvitationError("this invitation link is not valid")
        hashed = token_hash(token)
        record = await self._repo.find_session(token_hash=hashed)
        if record is None:
            # a phone the session was handed over to
            session_id = await self._repo.use_session_token("device", hashed, now)
            record = await self._repo.find_session(id=session_id) if session_id else None
        if record is None:
            raise InvitationError("this invitation link is not valid")
        if record.invite_expires_at <= now and record.state in (
            State.CREATED.value,
            *(s.value for s in PRE_CALL_STEPS),
            State.WAITING.value,
        ):
            raise InvitationExpired("this invitation link has expired; ask for a new one")
        if record.state in POST_CALL:
            until = customer_access_until(
                await self._repo.transitions(record.id),
                self._config.onboarding.customer_access_hours,
            )
            if until is not None and now > until:
                raise AccessExpired()
        return record

    async def handover(
        self, record: SessionRecord, now: float, base_url: str, minutes: int
    ) -> Invitation:
        """A short-lived, single-use link that continues ``record`` on another device
        (shown as a QR code): ``/join#handover=<token>``."""
        token = new_token()
        expires_at = min(now + minutes * 60, record.invite_expires_at)
        await self._repo.add_session_token(
            record.id, "handover", token_hash(token), now, expires_at
        )
        logger.info("session %s: handover link created", record.id)
        return Invitation(record.id, token, f"{base_url}/join#handover={token}", expires_at)

    async def claim_handover(self, token: object, now: float) -> str:
        """Spend a handover token; return a device token that opens the same session
        until the invitation expires. Raises :class:`InvitationError`."""
        if not isinstance(token, str) or not 20 <= len(token) <= 128:
            raise InvitationError("this code is not valid", code="handover_invalid")
        session_id = await self._repo.use_session_token("handover", token_hash(token), now)
        record = await self._repo.find_session(id=session_id) if session_id else None
        if record is None:
            raise InvitationError(
                "this code is not valid or was already used; show a new one on your computer",
                code="handover_invalid",
            )
        device = new_token()
        await self._repo.add_session_token(
            record.id, "device", token_hash(device), now, record.invite_expires_at
        )
        logger.info("session %s: continued on another device", record.id)
        return device
