"""The trust service: the token and the local CA, opened on first use (or at start),
with the certificates on record in the database and every issuance and revocation in
the audit log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asn1crypto import x509

from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..db.repository import CertificateRecord
from .ca import (
    REASONS,
    CaError,
    CertificateAuthority,
    Issued,
    LocalCa,
    TokenKeys,
)
from .token import Token

logger = logging.getLogger(__name__)


class Trust:
    def __init__(self, config: Config, repo: Repository, clock: Clock, base_url: str) -> None:
        self._config, self._repo, self._clock = config, repo, clock
        self.base_url = base_url
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

    def share_token(self, token: Token) -> None:
        """Use the token already open (the master key's): one session per process."""
        self._token = token

    async def ca(self) -> CertificateAuthority:
        """The CA, loaded from the database and the token, or created the first time."""
        async with self._lock:
            if self._ca is not None:
                return self._ca
            token = await asyncio.to_thread(lambda: self.token)
            cfg = self._config.ca
            ca: CertificateAuthority = LocalCa(
                TokenKeys(token),
                self.base_url,
                cfg.organization,
                cfg.policy_oid,
                cfg.customer_days,
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
            )
        )

    # -- customers -----------------------------------------------------------------------

    async def issue(self, session_id: str, fields: dict[str, str]) -> CertificateRecord:
        """A key in the token and a certificate for the session's customer. A failure
        anywhere leaves neither key nor certificate behind."""
        ca = await self.ca()
        now = self._clock.now()
        label = f"customer-{session_id}"
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

    async def revoke(self, serial: str, reason: str, actor: str) -> CertificateRecord:
        if reason not in REASONS:
            raise CaError(f"reason: one of {', '.join(REASONS)}", code="invalid_revocation_reason")
        record = await self._repo.find_certificate(serial.lower())
        if record is None or record.kind != "customer":
            raise CaError("no such customer certificate", code="certificate_not_found")
        now = self._clock.now()
        if not await self._repo.revoke_certificate(record.serial, reason, now):
            raise CaError("the certificate is already revoked", code="certificate_revoked")
        await self._repo.append_audit(
            now,
            "certificate_revoked",
            actor,
            record.session_id or "",
            {"serial": record.serial, "reason": reason},
        )
        found = await self._repo.find_certificate(record.serial)
        assert found is not None
        return found

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
                (c.serial, c.revoked_at or 0.0, c.revocation_reason or "unspecified")
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
