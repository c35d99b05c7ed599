"""After the approval: the customer's certificate and the signed contract (R16-R19).

1. ``request_certificate``: a key in the token and a qualified certificate for the
   verified data, and the contract made for this customer (APPROVED ->
   CERTIFICATE_REQUESTED).
2. ``set_pin``: the signature PIN (policy checked, typed twice); the PUK is shown once.
3. ``send_code``: a one-time code by SMS, bound to the digest of this contract: the
   SMS names the document, and the code signs nothing else.
4. ``sign``: the code, then the PIN, then the PAdES signature with the key in the token
   (CERTIFICATE_REQUESTED -> CONTRACT_SIGNED -> COMPLETED), and an e-mail that the
   certificate is active.

The PIN, PUK and code counters are in the database: reconnecting resets nothing. Each
attempt is consumed there before the secret is checked, in one conditional statement,
so that parallel requests check at most the limit (R17). The PIN is checked only once
the code matched: without the right code every answer is the code's, whatever the PIN,
and nothing is learnt of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
from typing import Any

from asn1crypto import x509
from sqlalchemy.exc import IntegrityError

from ..call_center import CallCenter
from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..errors import InvitationError, ValidationError
from ..notify import SmsGateway
from ..notify.codes import OneTimeCodes
from ..notify.mail import MailGateway
from ..notify.sms import masked
from ..session import State
from ..storage import ObjectStore
from ..tokens import new_token, token_hash
from . import pin as pins
from .ca import CaError
from .contract import ContractData, contract_pdf
from .own_ca import OnLoop
from .service import Trust
from .signing import SigningAuthority, sign_pdf

logger = logging.getLogger(__name__)

SIGNING_PURPOSE = "signature"
CODE_SECONDS = 600.0
CODE_ATTEMPTS = 3
CODE_SENDS = 3
DOCUMENT_NAME = "Contract for a qualified signature certificate"


def _binding(contract: bytes) -> str:
    """What a signing code is bound to: the digest of the contract it will sign."""
    return hashlib.sha256(contract).hexdigest()


def _signed_and_complete(machine: Any, at: float) -> None:
    machine.sign_contract(at)
    machine.complete(at)


CONTRACT_FETCHED = "contract_fetched"
"""The step result noting the digest of the contract the customer was last given."""


class SigningError(CaError):
    code = "signing_error"


async def signing_authority(trust: Trust, config: Config) -> SigningAuthority:
    """What signing needs of the CA. Its answers (CRLs, OCSP, timestamps) are made on
    the calling loop, where the trust service's database lives, even when a signing
    thread with a loop of its own asks."""
    ca = await trust.ca()
    assert ca.root is not None and ca.issuing is not None, "the CA is not loaded"
    timeout_seconds = config.tsa.timeout_seconds
    return SigningAuthority(
        root=ca.root,
        issuing=ca.issuing,
        answers=OnLoop(trust, asyncio.get_running_loop(), timeout_seconds),
        tsa_url=config.tsa.url,
        timeout_seconds=timeout_seconds,
    )


class ContractSigning:
    """The steps after the approval, for the customer's page and the bot."""

    def __init__(
        self,
        config: Config,
        repo: Repository,
        center: CallCenter,
        objects: ObjectStore,
        trust: Trust,
        sms: SmsGateway,
        mail: MailGateway,
        clock: Clock,
        provider: str,
    ) -> None:
        self._config, self._repo, self._center = config, repo, center
        self._objects, self._trust = objects, trust
        self._sms, self._mail, self._clock = sms, mail, clock
        self._codes = OneTimeCodes(repo, clock)
        self.provider = provider

    # -- what the page shows --------------------------------------------------------------

    async def overview(self, session_id: str) -> dict[str, Any]:
        record = await self._repo.find_session(id=session_id)
        assert record is not None
        fields = await self._fields(session_id)
        certificate = await self._certificate(session_id)
        pin = await self._repo.pin_state(certificate.serial) if certificate else None
        objects = {o.kind: o for o in await self._repo.objects_of(session_id)}
        return {
            "state": record.state,
            "to_issue": {
                "name": f"{fields.get('given_names', '')} {fields.get('surname', '')}".strip(),
                "document": fields.get("document_number", ""),
                "issuer": self._config.ca.organization,
                "valid_days": self._config.ca.customer_days,
                "kind": "qualified certificate for electronic signatures ("
                + ("QCP-n-qscd)" if self._config.pkcs11.qscd else "QCP-n, key not in a QSCD)"),
                "qscd": self._config.pkcs11.qscd,
            },
            "certificate": None
            if certificate is None
            else {
                "serial": certificate.serial,
                "subject": certificate.subject,
                "not_after": certificate.not_after,
                "status": certificate.status,
            },
            "pin_set": pin is not None,
            "pin_locked": bool(pin and pin["locked_at"] is not None),
            "contract": "contract" in objects,
            "signed": "signed_contract" in objects,
        }

    async def _fields(self, session_id: str) -> dict[str, str]:
        results = await self._repo.results(session_id)
        fields = dict(results.get("personal_data", {}).get("fields") or {})
        if not fields:  # no data step: what the zone read
            fields = dict(results.get("document", {}).get("mrz") or {})
        return {k: str(v) for k, v in fields.items() if isinstance(v, str | int)}

    async def _customer(self, session_id: str) -> Any:
        record = await self._repo.find_session(id=session_id)
        return await self._repo.find_customer(record.customer_id) if record else None

    async def _certificate(self, session_id: str) -> Any:
        issued = await self._repo.certificates(kind="customer", session_id=session_id)
        return issued[-1] if issued else None

    # -- 1. the certificate and the contract --------------------------------------------

    async def request_certificate(self, session_id: str) -> dict[str, Any]:
        transitions = await self._repo.transitions(session_id)
        approved_at = max(
            (at for _, to, at, _ in transitions if to == State.APPROVED.value), default=None
        )
        hours = self._config.onboarding.certificate_request_hours
        if approved_at is not None and self._clock.now() > approved_at + hours * 3600:
            raise SigningError(
                f"the certificate had to be requested within {hours:g} hours of the approval",
                code="certificate_window_closed",
            )

        async def save() -> dict[str, Any]:  # the session's state is checked first
            fields = await self._fields(session_id)
            if not fields.get("surname") or not fields.get("given_names"):
                raise SigningError(
                    "the verified data are missing: the certificate cannot name you",
                    code="no_verified_data",
                )
            certificate = await self._trust.issue(session_id, fields)
            contract, pages = await self._contract_for(session_id, fields, certificate.serial)
            now = self._clock.now()
            await self._objects.put(session_id, "contract", "application/pdf", contract, now)
            digest = hashlib.sha256(contract).hexdigest()
            await self._repo.put_result(
                session_id, "contract", {"pages": pages, "sha256": digest}, now
            )
            return {"serial": certificate.serial, "not_after": certificate.not_after}

        result: dict[str, Any] = await self._center.step(
            session_id,
            [State.APPROVED],
            save,
            advance=lambda machine, now: machine.request_certificate(now),
        )
        logger.info("session %s: certificate %s issued", session_id, result["serial"])
        return result

    async def _contract_for(
        self, session_id: str, fields: dict[str, str], serial: str
    ) -> tuple[bytes, list[list[str]]]:
        customer = await self._customer(session_id)
        document = (await self._repo.results(session_id)).get("document", {})
        now = datetime.datetime.fromtimestamp(self._clock.now(), datetime.UTC)
        data = ContractData(
            provider=self.provider,
            session_id=session_id,
            surname=fields.get("surname", ""),
            given_names=fields.get("given_names", ""),
            date_of_birth=fields.get("date_of_birth", ""),
            nationality=fields.get("nationality", ""),
            document=" ".join(
                str(x)
                for x in (
                    document.get("type"),
                    document.get("country"),
                    fields.get("document_number"),
                )
                if x
            ),
            email=customer.email if customer else "",
            phone=customer.phone if customer else "",
            certificate_serial=serial,
            date=now.date(),
            language=await self._language(session_id),
            qscd=self._config.pkcs11.qscd,
        )
        return await asyncio.to_thread(contract_pdf, data, now)

    async def _language(self, session_id: str) -> str:
        """The language the customer chose on their page: the one they gave consent in."""
        consents = await self._repo.consents(session_id)
        return str(consents[-1]["language"]) if consents else "en"

    async def pages(self, session_id: str) -> dict[str, Any]:
        """The contract's text, page by page, as the PDF lays it out (shown to the
        customer: the signature may follow, on this contract)."""
        contract = (await self._repo.results(session_id)).get("contract")
        if contract is None:
            raise SigningError("ask for the certificate first", code="no_contract")
        await self._fetched(session_id, contract["sha256"], "pages")
        return {"pages": contract["pages"], "sha256": contract["sha256"]}

    async def download(self, session_id: str, signed: bool) -> bytes:
        """The contract's PDF for the customer; the unsigned one is noted as fetched."""
        data = await self.document(session_id, signed)
        if not signed:
            await self._fetched(session_id, _binding(data), "pdf")
        return data

    async def _fetched(self, session_id: str, digest: str, how: str) -> None:
        """Note that the customer was given the contract of ``digest`` (issue 14: no
        signature on a contract never fetched)."""
        now = self._clock.now()
        try:
            await self._repo.put_result(
                session_id, CONTRACT_FETCHED, {"sha256": digest, "as": how, "at": now}, now
            )
        except IntegrityError:  # another fetch noted the same contract at that moment
            pass

    async def _check_fetched(self, session_id: str, binding: str) -> None:
        """``binding``: the contract's :func:`_binding`."""
        fetched = (await self._repo.results(session_id)).get(CONTRACT_FETCHED) or {}
        if fetched.get("sha256") != binding:
            raise SigningError(
                "read the contract first: open it, then sign", code="contract_not_fetched"
            )

    async def document(self, session_id: str, signed: bool) -> bytes:
        kind = "signed_contract" if signed else "contract"
        found = [o for o in await self._repo.objects_of(session_id) if o.kind == kind]
        if not found:
            raise SigningError(
                "there is no signed contract yet" if signed else "ask for the certificate first",
                code="no_contract",
            )
        _, data = await self._objects.get(found[-1].id)
        return data

    # -- 2. the PIN -------------------------------------------------------------------------

    async def set_pin(self, session_id: str, pin: str, again: str) -> dict[str, Any]:
        certificate = await self._ready(session_id)
        state, puk = await asyncio.to_thread(pins.PinState.create, pin, again, self._clock.now())
        if not await self._repo.save_pin_state(
            certificate.serial, dataclasses.asdict(state), new=True
        ):
            raise SigningError("the PIN is already set", code="pin_already_set")
        await self._repo.append_audit(
            self._clock.now(), "pin_set", "customer", session_id, {"serial": certificate.serial}
        )
        return {"puk": puk}

    async def unblock(self, session_id: str, puk: str, pin: str, again: str) -> dict[str, Any]:
        certificate = await self._ready(session_id)
        state = await self._pin_state(certificate.serial)
        if state.blocked_at is not None:
            raise pins.blocked()
        pins.check_policy(pin, again)  # a bad new PIN costs no PUK attempt
        now = self._clock.now()
        # the attempt is consumed before the PUK is checked (R17): parallel requests
        # check at most what is left of the ten
        failures = await self._repo.reserve_puk_attempt(
            certificate.serial, pins.MAX_PUK_FAILURES, now
        )
        if failures is None:
            raise pins.blocked()
        ok = await asyncio.to_thread(pins.puk_matches, state, puk)
        if ok:
            pin_hash = await asyncio.to_thread(pins.hash_secret, pin)
            ok = await self._repo.puk_passed(certificate.serial, state.puk_hash, pin_hash, now)
        await self._repo.append_audit(
            self._clock.now(),
            "pin_unblock",
            "customer",
            session_id,
            {"serial": certificate.serial, "ok": ok},
        )
        if not ok:
            raise pins.wrong_puk(failures)
        return {"unblocked": True}

    async def _refused(self, session_id: str, why: str, *, pin_checked: bool) -> None:
        """Evidence of a refused signature: why, and whether a PIN attempt was checked
        (never the PIN or the code)."""
        await self._repo.append_audit(
            self._clock.now(),
            "signature_refused",
            "customer",
            session_id,
            {"why": why, "pin_checked": pin_checked},
        )

    async def _pin_state(self, serial: str) -> pins.PinState:
        stored = await self._repo.pin_state(serial)
        if stored is None:
            raise SigningError("set your signature PIN first", code="pin_not_set")
        return pins.PinState(**stored)

    async def _ready(self, session_id: str) -> Any:
        record = await self._repo.find_session(id=session_id)
        if record is None or record.state != State.CERTIFICATE_REQUESTED.value:
            state = record.state if record else "unknown"
            raise SigningError(
                f"this step cannot be done now (the session is {state})", code="step_not_allowed"
            )
        certificate = await self._certificate(session_id)
        if certificate is None:  # pragma: no cover - issued with the state change
            raise SigningError("no certificate", code="certificate_not_found")
        if certificate.status != "good":
            raise SigningError("your certificate was revoked", code="certificate_revoked")
        return certificate

    # -- 3. the code ----------------------------------------------------------------------------

    async def send_code(self, session_id: str) -> dict[str, Any]:
        await self._ready(session_id)
        customer = await self._customer(session_id)
        if customer is None or not customer.phone:
            raise ValidationError("no mobile number for this session", code="no_phone")
        binding = _binding(await self.document(session_id, signed=False))
        issued = await self._codes.issue(
            session_id, SIGNING_PURPOSE, binding, CODE_SECONDS, max_sends=CODE_SENDS
        )
        await self._sms.send(
            customer.phone,
            f'Code {issued.code} to sign "{DOCUMENT_NAME}" (ref. {binding[:8]}) with '
            f"{self.provider}. Valid {round(CODE_SECONDS / 60)} min. Never give it to anyone.",
        )
        await self._repo.append_audit(
            self._clock.now(), "signature_code_sent", "customer", session_id, {"document": binding}
        )
        return {
            "sent_to": masked(customer.phone),
            "expires_at": issued.expires_at,
            "document_ref": binding[:8],
        }

    # -- 4. the signature -----------------------------------------------------------------------

    async def sign(self, session_id: str, pin: str, code: str) -> dict[str, Any]:
        certificate = await self._ready(session_id)
        serial = certificate.serial
        unsigned = await self.document(session_id, signed=False)
        # only a contract the customer was given (its text or its PDF), this very one;
        # no code or PIN attempt is spent before
        binding = _binding(unsigned)  # the document's digest, which the code is bound to
        await self._check_fetched(session_id, binding)
        state = await self._pin_state(serial)
        refused = pins.refusal(state)  # locked or blocked: no code attempt is spent on it
        if refused is not None:
            await self._refused(session_id, refused.code, pin_checked=False)
            raise refused
        # the code first: without it the PIN is not checked, and the answer says nothing
        # of it (a right PIN and a wrong one get the same otp_* answer)
        try:
            found = await self._codes.check(
                session_id, SIGNING_PURPOSE, binding, code, CODE_ATTEMPTS
            )
        except ValidationError as err:
            await self._refused(session_id, err.code, pin_checked=False)
            raise
        # then the PIN, its attempt consumed before it is checked (R17)
        now = self._clock.now()
        failures = await self._repo.reserve_pin_attempt(serial, pins.MAX_PIN_FAILURES, now)
        if failures is None:
            refused = pins.refusal(await self._pin_state(serial)) or pins.wrong_pin(
                pins.MAX_PIN_FAILURES
            )
            await self._refused(session_id, refused.code, pin_checked=False)
            raise refused
        right = await asyncio.to_thread(pins.pin_matches, state, pin)
        if not right or not await self._repo.pin_passed(serial, state.pin_hash):
            error = pins.wrong_pin(failures)
            await self._refused(session_id, error.code, pin_checked=True)
            raise error
        await self._codes.spend(found)
        ca = await self._trust.ca()
        fields = await self._fields(session_id)
        name = f"{fields.get('given_names', '')} {fields.get('surname', '')}".strip()
        # pyHanko hashes and writes the PDF in Python: in a thread with its own event loop,
        # so that this one (calls' media, other customers) is not held for that time; its
        # questions to our CA (timestamps, CRLs, OCSP) are answered on this loop, in-process
        authority = await signing_authority(self._trust, self._config)
        signed = await asyncio.to_thread(
            asyncio.run,
            sign_pdf(
                unsigned,
                ca.keys,
                certificate.key_label,
                x509.Certificate.load(certificate.der),
                authority,
                name=name,
                reason=DOCUMENT_NAME,
            ),
        )

        async def save() -> None:
            await self._objects.put(
                session_id, "signed_contract", "application/pdf", signed, self._clock.now()
            )

        await self._center.step(
            session_id,
            [State.CERTIFICATE_REQUESTED],
            save,
            advance=_signed_and_complete,
        )
        await self._repo.append_audit(
            self._clock.now(),
            "contract_signed",
            "customer",
            session_id,
            {"serial": certificate.serial, "sha256": hashlib.sha256(signed).hexdigest()},
        )
        customer = await self._customer(session_id)
        if customer is not None and customer.email:
            # the customer's own link stops working a while after this (R14.7): the signed
            # contract stays theirs through a short-lived link, good for one download
            hours = self._config.onboarding.contract_link_hours
            link = await self._contract_link(session_id, hours)
            try:
                await self._mail.send(
                    customer.email,
                    "Your qualified signature certificate is active",
                    f"Dear {name},\n\nyour qualified certificate for electronic signatures "
                    f"(serial {certificate.serial}) is active, and your contract is signed.\n"
                    f"Download the signed contract within {hours:g} hours (the link works "
                    f"once):\n{link}\n\n"
                    f"Keep your signature PIN and your PUK secret.\n\n{self.provider}\n",
                )
            except Exception:  # the contract is signed either way; the mail can be resent
                logger.exception("session %s: the activation e-mail failed", session_id)
        logger.info("session %s: contract signed", session_id)
        return {"signed": True, "sha256": hashlib.sha256(signed).hexdigest()}

    # -- 5. the signed contract, by the e-mail's link --------------------------------------------

    async def _contract_link(self, session_id: str, hours: float) -> str:
        token = new_token()
        now = self._clock.now()
        await self._repo.add_session_token(
            session_id, "contract", token_hash(token), now, now + hours * 3600
        )
        return f"{self._config.base_url()}/contract#{token}"

    async def download_signed(self, token: object) -> bytes:
        """The signed contract a link from the activation e-mail opens, once and within
        ``onboarding.contract_link_hours``. Raises InvitationError (``link_invalid``)."""
        session_id = None
        if isinstance(token, str) and 20 <= len(token) <= 128:
            session_id = await self._repo.use_session_token(
                "contract", token_hash(token), self._clock.now()
            )
        if session_id is None:
            raise InvitationError(
                "this link is not valid, was already used or has expired", code="link_invalid"
            )
        data = await self.document(session_id, signed=True)
        await self._repo.append_audit(
            self._clock.now(), "contract_downloaded", "customer", session_id, {"by": "link"}
        )
        return data
