"""Signing the contract: a PAdES signature (ETSI EN 319 142, baseline LT) made with the
customer's key in the token, with a signature timestamp from the local TSA and the
certificates, OCSP responses and CRLs needed to validate it later embedded in the
document (its DSS), fetched from the server's own CRL and OCSP addresses.

The key is used through the token's lock only for the signature itself: the fetching
of revocation data (which makes the server sign OCSP answers in the same token) runs
without it.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
from asn1crypto import algos, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

from .ca import TokenKeys

SIGNATURE_FIELD = "CustomerSignature"


class TokenSigner(Signer):
    """ECDSA P-256 with SHA-256 by a key in the token."""

    def __init__(
        self, keys: TokenKeys, label: str, certificate: x509.Certificate, chain: list[Any]
    ) -> None:
        registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]
        registry.register_multiple([certificate, *chain])
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


async def sign_pdf(
    pdf: bytes,
    keys: TokenKeys,
    label: str,
    certificate: x509.Certificate,
    issuing: x509.Certificate,
    root: x509.Certificate,
    tsa_url: str,
    *,
    name: str,
    reason: str,
) -> bytes:
    """``pdf`` signed (PAdES baseline LT), as a new incremental revision."""
    async with aiohttp.ClientSession() as http:
        context = ValidationContext(
            trust_roots=[root],
            other_certs=[issuing],
            allow_fetching=True,
            revocation_mode="hard-fail",
            fetcher_backend=AIOHttpFetcherBackend(session=http),
        )
        meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=True,
            validation_context=context,
            use_pades_lta=False,
            name=name,
            reason=reason,
        )
        signer = TokenSigner(keys, label, certificate, [issuing, root])
        timestamper = HTTPTimeStamper(tsa_url, session=http)
        pdf_signer = signers.PdfSigner(meta, signer=signer, timestamper=timestamper)
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        out = await pdf_signer.async_sign_pdf(writer, in_place=False)
        # then revocation data newer than the signature, for it and for its timestamp's
        # unit, in the document security store (what "pyhanko sign ltvfix" does): what
        # was fetched while signing predates the signature and cannot vouch for it
        reader = PdfFileReader(io.BytesIO(out.getvalue()))
        final = await async_add_validation_info(reader.embedded_signatures[-1], context)
    return bytes(final.getvalue())
