"""Signing the contract: a PAdES baseline B-LTA signature (ETSI EN 319 142-1) made with
the customer's key in the token, and the archive timestamps that keep it verifiable.

:func:`sign_pdf` writes four revisions after the contract's:

1. the signature (CMS with the signer's certificate once, the chain beside it) with a
   signature timestamp, and the validation data known before signing in the DSS;
2. revocation data fetched *after* the signature timestamp, by a new validation
   context (the first one's cache would hand back what predates the signature, which
   cannot vouch for it), for the signer's chain and the timestamp unit's;
3. a document timestamp over all that (the proof that the validation data existed);
4. the document timestamp's own validation data in the DSS.

:func:`extend_pdf` adds a new archive timestamp (fresh validation data for the newest
timestamp, then a document timestamp over it); :func:`archive_state` says when one is
due. CRLs, OCSP and timestamps of our own CA are answered in-process
(:mod:`.own_ca`); an external TSA (``tsa.url``) is asked over HTTP.

The token's lock is held only for the raw signature: fetching revocation data (which
makes the CA sign OCSP answers in the same token) runs without it.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import time
from dataclasses import dataclass

import aiohttp
from asn1crypto import algos, cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from .ca import CaError, TokenKeys
from .own_ca import OwnAddresses, OwnCaFetcherBackend, OwnTsaTimeStamper, RelyingPartyAnswers

SIGNATURE_FIELD = "CustomerSignature"
ARCHIVE_FIELD_PREFIX = "ArchiveTimestamp"
STRONG_DIGESTS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
REVINFO_AFTER_SECONDS = 1.5
"""Our CA dates CRLs a second back and OCSP answers to the whole second: revocation data
asked for sooner than this after the signature timestamp could carry an earlier date,
and a validator would rightly not take it as issued after the signature."""


SIGNING_FAILURES = (
    SigningError,
    TimestampRequestError,
    SignatureValidationError,
    PathError,
    ValidationError,
    PdfError,
    aiohttp.ClientError,
    OSError,
)
"""What pyHanko and its fetching raise when a signature or timestamp cannot be made:
translated to ``signature_failed`` at the boundary."""


class SignatureFailed(CaError):
    code = "signature_failed"
    status = 502


class TokenSigner(Signer):
    """ECDSA P-256 with SHA-256 by a key in the token."""

    def __init__(
        self,
        keys: TokenKeys,
        label: str,
        certificate: x509.Certificate,
        chain: list[x509.Certificate],
    ) -> None:
        # the chain only: pyHanko adds the signing certificate itself, and a registry
        # holding it too put it in the CMS twice
        registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]
        registry.register_multiple(chain)
        super().__init__(
            signing_cert=certificate,
            cert_registry=registry,
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            embed_roots=True,
        )
        self._keys, self._label = keys, label

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return bytes(72)  # the largest DER ECDSA P-256 signature
        if digest_algorithm != "sha256":
            raise ValueError(f"only SHA-256 here, not {digest_algorithm}")
        return await asyncio.to_thread(self._keys.sign, self._label, data)


@dataclass(frozen=True)
class SigningAuthority:
    """What signing and archiving need of the CA."""

    root: x509.Certificate
    """The only trust anchor of our certificates."""
    issuing: x509.Certificate
    answers: RelyingPartyAnswers
    """CRLs, OCSP and timestamps of our CA, in-process."""
    tsa_url: str = ""
    """An external RFC 3161 TSA; empty means our own timestamping unit."""
    timeout_seconds: float = 20.0
    """The longest wait for an external TSA or a CRL/OCSP fetched over HTTP."""

    def _timestamper(self, http: aiohttp.ClientSession) -> TimeStamper:
        if self.tsa_url:
            return HTTPTimeStamper(self.tsa_url, timeout=self.timeout_seconds, session=http)
        return OwnTsaTimeStamper(self.answers)

    def _context(
        self, http: aiohttp.ClientSession, certificates: list[x509.Certificate]
    ) -> ValidationContext:
        """A new validation context: nothing cached from an earlier one."""
        backend = OwnCaFetcherBackend(
            OwnAddresses.of(self.root, self.issuing, certificates),
            self.answers,
            http,
            self.timeout_seconds,
        )
        # an external TSA chains to a root of its own: the system's trust store beside ours
        if self.tsa_url:
            return ValidationContext(
                extra_trust_roots=[self.root],
                other_certs=[self.issuing],
                allow_fetching=True,
                revocation_mode="hard-fail",
                fetcher_backend=backend,
            )
        return ValidationContext(
            trust_roots=[self.root],
            other_certs=[self.issuing],
            allow_fetching=True,
            revocation_mode="hard-fail",
            fetcher_backend=backend,
        )


def _signature_timestamp(signer_info: cms.SignerInfo) -> cms.SignedData | None:
    """The signature timestamp token (an unsigned attribute), if there is one."""
    return next(iter(extract_tst_data_iter(signer_info, signed=False)), None)


def _gen_time(token: cms.SignedData) -> datetime.datetime:
    info = token["encap_content_info"]["content"].parsed
    return info["gen_time"].native  # type: ignore[no-any-return]


async def _after(at: datetime.datetime) -> None:
    """Return once ``at`` is far enough in the past for our CA's answers to postdate it."""
    delay = at.timestamp() + REVINFO_AFTER_SECONDS - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def sign_pdf(
    pdf: bytes,
    keys: TokenKeys,
    label: str,
    certificate: x509.Certificate,
    authority: SigningAuthority,
    *,
    name: str,
    reason: str,
) -> bytes:
    """``pdf`` signed, PAdES B-LTA, in new incremental revisions. Raises
    :class:`SignatureFailed` (with the cause) when a timestamp or the validation data
    cannot be had."""
    try:
        async with aiohttp.ClientSession() as http:
            timestamper = authority._timestamper(http)
            meta = signers.PdfSignatureMetadata(
                field_name=SIGNATURE_FIELD,
                md_algorithm="sha256",
                subfilter=fields.SigSeedSubFilter.PADES,
                embed_validation_info=True,
                validation_context=authority._context(http, [certificate]),
                use_pades_lta=False,  # done below, with validation data newer than this
                name=name,
                reason=reason,
            )
            signer = TokenSigner(keys, label, certificate, [authority.issuing, authority.root])
            pdf_signer = signers.PdfSigner(meta, signer=signer, timestamper=timestamper)
            signed = await pdf_signer.async_sign_pdf(
                IncrementalPdfFileWriter(io.BytesIO(pdf)), in_place=False
            )
            reader = PdfFileReader(signed)
            signature = reader.embedded_signatures[-1]
            token = _signature_timestamp(signature.signer_info)
            if token is not None:
                await _after(_gen_time(token))
            fresh = await async_add_validation_info(
                signature, authority._context(http, [certificate]), force_write=True
            )
            return await _document_timestamp(fresh, authority, http, timestamper, [certificate])
    except SIGNING_FAILURES as err:
        raise SignatureFailed(f"the signature could not be completed: {err}") from err


async def _document_timestamp(
    stream: io.BytesIO,
    authority: SigningAuthority,
    http: aiohttp.ClientSession,
    timestamper: TimeStamper,
    certificates: list[x509.Certificate],
) -> bytes:
    """A document timestamp over ``stream``, then its TSA's validation data in the
    DSS, fetched by a new context once the timestamp is in the past: a validator
    that cannot get newer data (offline, years later) slides the TSA's check back to
    that data's date, which the timestamp must precede."""
    stream.seek(0)
    taken = {str(s.field_name) for s in PdfFileReader(stream).embedded_signatures}
    number = 1
    while f"{ARCHIVE_FIELD_PREFIX}{number}" in taken:
        number += 1
    stream.seek(0)
    stamped = io.BytesIO()
    await signers.PdfTimeStamper(
        timestamper, field_name=f"{ARCHIVE_FIELD_PREFIX}{number}"
    ).async_timestamp_pdf(IncrementalPdfFileWriter(stream), "sha256", output=stamped)
    archive = PdfFileReader(stamped).embedded_timestamp_signatures[-1]
    await _after(_gen_time(archive.signed_data))
    out = await async_add_validation_info(
        archive, authority._context(http, certificates), force_write=True
    )
    return bytes(out.getvalue())


@dataclass(frozen=True)
class ArchiveState:
    """Where a signed PDF's chain of timestamps stands."""

    newest_at: datetime.datetime
    """When the newest timestamp (document timestamp, else the signature's) was made."""
    tsa_not_after: datetime.datetime
    """When that timestamp's TSA certificate expires."""
    digest_algorithm: str
    """The digest that timestamp covers the document with."""
    document_timestamps: int
    """How many document (archive) timestamps the file holds."""

    def due(self, now: datetime.datetime, margin_days: float) -> bool:
        """Whether a new archive timestamp is needed: the newest one's TSA certificate
        expires within ``margin_days``, or its digest is no longer strong."""
        return (
            self.tsa_not_after - now <= datetime.timedelta(days=margin_days)
            or self.digest_algorithm not in STRONG_DIGESTS
        )


def _tsa_certificate(token: cms.SignedData) -> x509.Certificate:
    signer = token["signer_infos"][0]["sid"]
    for choice in token["certificates"]:
        cert = choice.chosen
        if (
            signer.name == "issuer_and_serial_number"
            and cert.issuer == signer.chosen["issuer"]
            and cert.serial_number == signer.chosen["serial_number"].native
        ) or (
            signer.name == "subject_key_identifier" and cert.key_identifier == signer.chosen.native
        ):
            return cert
    raise SignatureFailed(
        "a timestamp does not hold its TSA's certificate", code="archive_unreadable"
    )


def archive_state(pdf: bytes) -> ArchiveState:
    """The newest timestamp of ``pdf`` (a signed contract). Raises
    :class:`SignatureFailed` (``archive_unreadable``) for a PDF without one."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf))
        documents = reader.embedded_timestamp_signatures
        if documents:
            token = documents[-1].signed_data
            digest = documents[-1].md_algorithm
        else:
            signatures = reader.embedded_regular_signatures
            found = _signature_timestamp(signatures[-1].signer_info) if signatures else None
            if found is None:
                raise SignatureFailed("no timestamp in this PDF", code="archive_unreadable")
            token = found
            info = token["encap_content_info"]["content"].parsed
            digest = info["message_imprint"]["hash_algorithm"]["algorithm"].native
    except (PdfError, ValueError, KeyError) as err:
        raise SignatureFailed(f"not a signed PDF: {err}", code="archive_unreadable") from err
    tsa = _tsa_certificate(token)
    return ArchiveState(
        newest_at=_gen_time(token),
        tsa_not_after=tsa.not_valid_after,
        digest_algorithm=str(digest),
        document_timestamps=len(documents),
    )


async def extend_pdf(pdf: bytes, authority: SigningAuthority) -> bytes:
    """``pdf`` with a new archive timestamp: fresh validation data for its newest
    timestamp in the DSS, then a document timestamp over everything, then that
    timestamp's own validation data. Raises :class:`SignatureFailed`."""
    try:
        async with aiohttp.ClientSession() as http:
            reader = PdfFileReader(io.BytesIO(pdf))
            certificates = [s.signer_cert for s in reader.embedded_regular_signatures]
            timestamper = authority._timestamper(http)
            stream = io.BytesIO(pdf)
            documents = reader.embedded_timestamp_signatures
            if documents:
                # the newest timestamp's chain, checked and its revocation data added
                # now (a new context: fresh answers) before the next one covers it
                stream = await async_add_validation_info(
                    documents[-1], authority._context(http, certificates), force_write=True
                )
            return await _document_timestamp(stream, authority, http, timestamper, certificates)
    except SignatureFailed:
        raise
    except SIGNING_FAILURES as err:
        raise SignatureFailed(f"the archive timestamp could not be added: {err}") from err
