"""Proof that a contact the customer typed is theirs, before saying whether it is taken.

Answering ``email_in_use`` / ``phone_in_use`` at once would let anyone holding a link
find out which addresses and numbers are customers' (issue 14, item 6). So a contact
that differs from the one on record (the invitation's, or the one proven last) gets a
six-digit code sent to it, and only the right code leads to a verdict: accepted, or in
use. Before the proof the answer is the same whether the contact is taken or free.

The codes are :class:`~videoid.notify.codes.OneTimeCodes`: kept only as a hash, bound
to the exact contact (a code sent to one address never proves another), valid for
``onboarding.contact_code_minutes``, each attempt consumed in the database before the
code is compared (``onboarding.contact_code_attempts``), at most
``onboarding.contact_code_sends`` codes per contact kind and session, each send taken
in the database before the code is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..db.repository import CodeRecord
from ..errors import RateLimited, ValidationError
from ..notify.codes import OneTimeCodes
from ..notify.mail import MailGateway
from ..notify.sms import SmsGateway, masked

KINDS = ("email", "phone")
SEND_WINDOW_SECONDS = 600.0


def purpose(kind: str) -> str:
    return f"contact_{kind}"


def binding(repo: Repository, kind: str, value: str) -> str:
    """What a contact code is bound to: the contact's blind index (keyed: the codes
    table keeps no address or number, nor a digest anyone could reverse by trying every
    number)."""
    return repo.personal.contact_index(kind, value)


def masked_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


@dataclass(frozen=True)
class ProofPending:
    """Codes were sent (or are still valid) for contacts not yet proven; nothing said
    about whether they are taken."""

    verify: tuple[str, ...]
    """The contact kinds (``email``, ``phone``) whose code the customer must enter."""
    sent_to: dict[str, str]
    """Where a code went in this request, masked (``+39•••67``), by kind."""
    expires_at: float
    """When the codes sent now stop working (seconds since the epoch)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": False,
            "verify": list(self.verify),
            "sent_to": self.sent_to,
            "expires_at": self.expires_at,
        }


class ContactProof:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        clock: Clock,
        sms: SmsGateway,
        mail: MailGateway,
    ) -> None:
        self._config, self._sms, self._mail = config, sms, mail
        self._repo, self._clock = repo, clock
        self._codes = OneTimeCodes(repo, clock)

    async def prove(
        self, session_id: str, changed: dict[str, str], codes: dict[str, str]
    ) -> ProofPending | list[CodeRecord]:
        """For the contacts in ``changed`` (kind → value): without a code for each,
        send codes to those without one and answer :class:`ProofPending`; with them,
        check each (an attempt consumed first) and return the matched codes, still
        unspent (:meth:`spend` them with the verdict). A wrong, expired or used code
        raises :class:`~videoid.notify.codes.OtpError` (field ``<kind>_code``)."""
        limits = self._config.onboarding
        now = self._clock.now()
        missing = [kind for kind in KINDS if kind in changed and not codes.get(kind)]
        if missing:
            sent_to, expires_at = {}, 0.0
            for kind in missing:
                # the send is taken in the database before the code is made: parallel
                # requests send at most the limit (an SMS costs, and reaches a stranger)
                sent = await self._repo.reserve_attempt(
                    session_id, f"contact_code_{kind}", limits.contact_code_sends, now
                )
                if sent is None:
                    raise RateLimited(
                        "enough codes were sent; contact us if none arrived",
                        code="otp_send_limit",
                    )
                await self._repo.finish_attempt(sent[0], True, [], now)
                issued = await self._codes.issue(
                    session_id,
                    purpose(kind),
                    binding(self._repo, kind, changed[kind]),
                    limits.contact_code_minutes * 60,
                    max_sends=limits.contact_code_sends,
                    per_seconds=SEND_WINDOW_SECONDS,
                )
                await self._send(kind, changed[kind], issued.code)
                sent_to[kind] = (
                    masked(changed[kind]) if kind == "phone" else masked_email(changed[kind])
                )
                expires_at = issued.expires_at
            return ProofPending(tuple(k for k in KINDS if k in changed), sent_to, expires_at)
        found = []
        for kind in KINDS:
            if kind not in changed:
                continue
            try:
                found.append(
                    await self._codes.check(
                        session_id,
                        purpose(kind),
                        binding(self._repo, kind, changed[kind]),
                        codes[kind],
                        limits.contact_code_attempts,
                    )
                )
            except ValidationError as err:
                err.field = f"{kind}_code"
                raise
        return found

    async def spend(self, found: list[CodeRecord]) -> None:
        for code in found:
            await self._codes.spend(code)

    async def _send(self, kind: str, value: str, code: str) -> None:
        minutes = round(self._config.onboarding.contact_code_minutes)
        provider = self._config.ca.organization
        if kind == "phone":
            await self._sms.send(
                value,
                f"Code {code} to confirm this mobile number for your identification with "
                f"{provider}. Valid {minutes} min. Never give it to anyone.",
            )
        else:
            await self._mail.send(
                value,
                "Your confirmation code",
                f"Code {code} confirms this e-mail address for your identification with "
                f"{provider}. It is valid for {minutes} minutes. If you did not ask for "
                "it, ignore this message.",
            )


def codes_from(body: dict[str, Any]) -> dict[str, str]:
    """The ``codes`` object of a data step's body: ``{"email": "123456", ...}``."""
    raw = body.get("codes", {})
    if not isinstance(raw, dict) or set(raw) - set(KINDS):
        raise ValidationError(
            "codes: an object with the codes sent to email and phone", code="invalid_payload"
        )
    out = {}
    for kind, value in raw.items():
        if not isinstance(value, str):
            raise ValidationError(
                "the code has 6 digits", code="invalid_code", field=f"{kind}_code"
            )
        if value.strip():
            out[kind] = value.strip()
    return out
