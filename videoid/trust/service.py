"""The trust service: the token and the local CA, opened on first use (or at start),
with the certificates on record in the database and every issuance and revocation in
the audit log. A revoked customer's key is destroyed in the token."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import urllib.parse
from typing import Any

from asn1crypto import x509

from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..db.repository import CertificateRecord
from ..errors import TokenUnavailable
from .ca import (
    REASONS,
    CaError,
    CertificateAuthority,
    Issued,
    LocalCa,
    TokenKeys,
)
from .profile import CaProfile, ca_base_url
from .token import Token

logger = logging.getLogger(__name__)

CUSTOMER_KEY_PREFIX = "customer-"
"""Customers' key labels: the prefix, the session id, a random suffix per attempt."""


class Trust:
    def __init__(self, config: Config, repo: Repository, clock: Clock, base_url: str) -> None:
        self._config, self._repo, self._clock = config, repo, clock
        self.base_url = base_url
        """Where this server listens (its TSA at ``/tsa``)."""
        self.ca_url = ca_base_url(config)
        """Base of the CRL, OCSP and caIssuers addresses written in new certificates."""
        self._lock = asyncio.Lock()
        self._token: Token | None = None
        self._owns_token = False
        self._ca: CertificateAuthority | None = None

    @property
    def token(self) -> Token:
        if self._token is None:
            self._token = Token.from_config(self._config)
            self._owns_token = True
        return self._token

    @property
    def qscd(self) -> bool:
        """Whether customers' keys are in a certified QSCD (``pkcs11.qscd``): their
        certificates then claim QcSSCD and QCP-n-qscd; otherwise QCP-n, no QSCD."""
        return self._config.pkcs11.qscd

    def share_token(self, token: Token) -> None:
        """Use the token already open (the master key's): one session per process."""
        self._token = token

    async def ca(self) -> CertificateAuthority:
        """The CA, loaded from the database and the token, or created the first time."""
        async with self._lock:
            if self._ca is not None:
                return self._ca
            token = await asyncio.to_thread(lambda: self.token)
            ca: CertificateAuthority = LocalCa(
                TokenKeys(token), CaProfile.from_config(self._config)
            )
            own = {c.kind: c for c in await self._repo.certificates() if c.kind != "customer"}
            if {"root", "issuing", "tsa"} <= set(own):
                await asyncio.to_thread(
                    ca.load, own["root"].der, own["issuing"].der, own["tsa"].der
                )
            elif own:
                raise CaError(
                    f"the CA is half on record ({', '.join(sorted(own))}): restore the database",
                    code="ca_inconsistent",
                )
            else:
                now = self._clock.now()
                made = await asyncio.to_thread(ca.create, now)
                for issued, kind in zip(made, ("root", "issuing", "tsa"), strict=True):
                    await self._record(issued, kind, None, now)
                await self._repo.append_audit(
                    now, "ca_created", "system", "", {"root": made[0].serial}
                )
                logger.info("local CA created: root %s, issuing %s", made[0].serial, made[1].serial)
            self._ca = ca
            return ca

    async def _record(self, issued: Issued, kind: str, session_id: str | None, now: float) -> None:
        cert = issued.certificate
        await self._repo.add_certificate(
            CertificateRecord(
                serial=issued.serial,
                kind=kind,
                session_id=session_id,
                subject=cert.subject.human_friendly,
                key_label=issued.key_label,
                der=bytes(cert.dump()),
                not_before=cert.not_valid_before.timestamp(),
                not_after=cert.not_valid_after.timestamp(),
                status="good",
                revoked_at=None,
                revocation_reason=None,
                created_at=now,
                ca_url=issued.ca_url,
            )
        )

    # -- customers -----------------------------------------------------------------------

    async def issue(self, session_id: str, fields: dict[str, str]) -> CertificateRecord:
        """A key in the token and a certificate for the session's customer. A failure
        anywhere leaves neither key nor certificate behind."""
        ca = await self.ca()
        # what kind of document, issued by whom: the identifier's type and country
        document = (await self._repo.results(session_id)).get("document") or {}
        mrz = document.get("mrz") or {}
        known = {
            "document_type": document.get("type"),
            "document_code": mrz.get("document_code"),
            "issuing_state": mrz.get("issuing_state") or document.get("country"),
        }
        fields = {**{k: str(v) for k, v in known.items() if v}, **fields}
        now = self._clock.now()
        # one label per attempt: a crash between the key and its certificate leaves a
        # key no retry collides with, found and destroyed at the next start
        label = f"{CUSTOMER_KEY_PREFIX}{session_id}-{secrets.token_hex(4)}"
        issued = await asyncio.to_thread(ca.issue, label, fields, now)
        try:
            await self._record(issued, "customer", session_id, now)
        except BaseException:
            await asyncio.to_thread(ca.keys.destroy, label)
            raise
        await self._repo.append_audit(
            now, "certificate_issued", "system", session_id, {"serial": issued.serial}
        )
        record = await self._repo.find_certificate(issued.serial)
        assert record is not None
        return record

    async def token_health(self) -> str:
        """``ok`` when the token answers within a second, ``busy`` when it does not,
        ``unused`` when this process has not opened it (no CA yet)."""
        token = self._token
        if token is None:
            return "unused"

        try:
            await asyncio.to_thread(token.run, lambda session: None, 1.0)
        except TokenUnavailable:
            return "busy"
        return "ok"

    async def reconcile_keys(self) -> list[str]:
        """At start: destroy the customer keys in the token that no certificate names
        (an issuance cut off between the key and its certificate), each audited. Only
        when the CA exists (no CA, no customer key); returns the labels destroyed."""
        known = await self._repo.certificates()
        if not any(c.kind == "root" for c in known):
            return []
        ca = await self.ca()
        named = {c.key_label for c in known}
        orphans = sorted(await asyncio.to_thread(ca.keys.labels, CUSTOMER_KEY_PREFIX) - named)
        for label in orphans:
            await asyncio.to_thread(ca.keys.destroy, label)
            session_id = label[len(CUSTOMER_KEY_PREFIX) :][:36]
            await self._repo.append_audit(
                self._clock.now(), "orphan_key_destroyed", "system", session_id, {"label": label}
            )
            logger.warning("destroyed a customer key no certificate names: %s", label)
        return orphans

    async def revoke(self, serial: str, reason: str, actor: str) -> CertificateRecord:
        """Revoke a customer's certificate (at once in the CRL and OCSP) and destroy
        its key in the token. Refuses ``certificate_hold`` (``hold_not_supported``: a
        hold could never be released, the key being gone) and ``unspecified``
        (``revocation_reason_required``)."""
        if reason == "certificate_hold":
            raise CaError(
                "a certificate cannot be put on hold here: revoke it for good, with a reason",
                code="hold_not_supported",
            )
        if reason == "unspecified":
            raise CaError(
                f"say why: one of {', '.join(REASONS)}", code="revocation_reason_required"
            )
        if reason not in REASONS:
            raise CaError(f"reason: one of {', '.join(REASONS)}", code="invalid_revocation_reason")
        record = await self._repo.find_certificate(serial.lower())
        if record is None or record.kind != "customer":
            raise CaError("no such customer certificate", code="certificate_not_found")
        ca = await self.ca()
        now = self._clock.now()
        if not await self._repo.revoke_certificate(record.serial, reason, now):
            # a revocation whose key destruction failed is finished by asking again
            await self._destroy_key(ca, record)
            raise CaError("the certificate is already revoked", code="certificate_revoked")
        await self._repo.append_audit(
            now,
            "certificate_revoked",
            actor,
            record.session_id or "",
            {"serial": record.serial, "reason": reason},
        )
        await self._destroy_key(ca, record)
        found = await self._repo.find_certificate(record.serial)
        assert found is not None
        return found

    async def _destroy_key(self, ca: CertificateAuthority, record: CertificateRecord) -> None:
        """The revoked certificate's key out of the token: nobody signs with it again."""
        if not await asyncio.to_thread(ca.keys.exists, record.key_label):
            return
        try:
            await asyncio.to_thread(ca.keys.destroy, record.key_label)
        except Exception as err:  # the token's own errors, translated here
            logger.error("certificate %s revoked but its key not destroyed: %r", record.serial, err)
            raise CaError(
                "the certificate is revoked, but its key could not be destroyed in the token:"
                " revoke it again to retry",
                code="key_not_destroyed",
            ) from err
        await self._repo.append_audit(
            self._clock.now(),
            "key_destroyed",
            "system",
            record.session_id or "",
            {"serial": record.serial},
        )
        logger.info("certificate %s: key destroyed in the token", record.serial)

    # -- what relying parties ask -------------------------------------------------------------

    async def certificate(self, which: str) -> bytes:
        ca = await self.ca()
        cert: x509.Certificate | None = {
            "root": ca.root,
            "issuing": ca.issuing,
            "tsa": ca.tsa,
        }.get(which)
        if cert is None:
            raise CaError("no such CA certificate", code="certificate_not_found")
        return bytes(cert.dump())

    async def crl(self, which: str) -> bytes:
        ca = await self.ca()
        if which not in ("root", "issuing"):
            raise CaError("no such CRL", code="certificate_not_found")
        revoked = (
            [
                (c.serial, c.revoked_at or 0.0, c.revocation_reason)
                for c in await self._repo.certificates(kind="customer", revoked=True)
            ]
            if which == "issuing"
            else []
        )
        return await asyncio.to_thread(ca.crl, revoked, self._clock.now(), root=which == "root")

    async def ocsp(self, request: bytes) -> bytes:
        ca = await self.ca()
        status: dict[str, tuple[str, float | None, str | None]] = {
            c.serial: (c.status, c.revoked_at, c.revocation_reason)
            for c in await self._repo.certificates(kind="customer")
        }
        return await asyncio.to_thread(ca.ocsp, request, status, self._clock.now())

    async def timestamp(self, request: bytes) -> bytes:
        ca = await self.ca()
        return await asyncio.to_thread(ca.timestamp, request, self._clock.now())

    async def own_urls(self) -> frozenset[str]:
        """Every base under which certificates of this CA name its CRLs, OCSP and CA
        certificates (as kept with each certificate), and the one new certificates get."""
        return frozenset([self.ca_url, *await self._repo.certificate_urls()])

    async def answer(self, url: str, body: bytes | None = None) -> bytes | None:
        """What the server answers at ``url``, if it is one of this CA's own addresses
        (:meth:`own_urls`, or this server's ``base_url``): a CA certificate, a CRL, an
        OCSP response (``body`` the request, or in the path for GET) or a timestamp
        (``body`` the query); None for any other address. Computed here, so that a
        signer in this process needs neither the network nor the port the
        certificate's addresses were written with."""
        path = None
        for base in {self.base_url, *await self.own_urls()}:
            if url.startswith(base.rstrip("/") + "/"):
                path = url[len(base.rstrip("/")) :]
                break
        if path is None:
            return None
        for which in ("root", "issuing", "tsa"):
            if path == f"/ca/{which}.crt":
                return await self.certificate(which)
            if path == f"/ca/{which}.crl":
                return await self.crl(which)
        if path == "/ca/ocsp" and body is not None:
            return await self.ocsp(body)
        if path.startswith("/ca/ocsp/") and body is None:
            try:
                request = base64.b64decode(urllib.parse.unquote(path[9:]), validate=True)
            except (binascii.Error, ValueError):
                return None
            return await self.ocsp(request)
        if path == "/tsa" and body is not None:
            return await self.timestamp(body)
        return None

    def describe(self, record: CertificateRecord) -> dict[str, Any]:
        return {
            "serial": record.serial,
            "kind": record.kind,
            "session_id": record.session_id,
            "subject": record.subject,
            "not_before": record.not_before,
            "not_after": record.not_after,
            "status": record.status,
            "revoked_at": record.revoked_at,
            "revocation_reason": record.revocation_reason,
        }

    def close(self) -> None:
        if self._token is not None and self._owns_token:
            self._token.close()
        self._token = None
