"""RFC 3161 timestamps for the evidence seals and the audit log's anchors.

A :class:`TimestampPort` turns a SHA-256 digest into a time-stamp token (the CMS
``ContentInfo`` a TSA returns in its response). :class:`LocalTsa` asks the local CA's
timestamping unit in-process (no network, whatever port the server listens on);
:class:`HttpTsa` asks an external TSA (``[tsa] url``).

:func:`check_token` verifies a token offline, trusting nothing in it: that it covers the
digest, that its signature verifies with the certificate it names, that the
certificate may time-stamp, and (given trusted roots) that it chains to one of them.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..errors import VideoidError


class TimestampError(VideoidError):
    code = "timestamp_failed"
    status = 502


class TimestampPort(Protocol):
    async def timestamp(self, digest: bytes) -> bytes:
        """A time-stamp token (DER ``ContentInfo``) over a SHA-256 ``digest``.
        Raises :class:`TimestampError`."""
        ...


def request_for(digest: bytes) -> tuple[bytes, int]:
    """A DER TimeStampReq over a SHA-256 digest asking for the certificate, and its nonce."""
    nonce = secrets.randbits(63)
    req = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return req.dump(), nonce


def token_from_response(response: bytes, nonce: int, digest: bytes) -> bytes:
    """The token of a granted response, checked (it covers ``digest`` and its signature
    verifies: a token that would fail every later verification is not kept); raises
    :class:`TimestampError` otherwise."""
    try:
        resp = tsp.TimeStampResp.load(response)
        status = resp["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            text = resp["status"]["status_string"].native or []
            raise TimestampError(f"the TSA refused: {status} {' '.join(text)}".strip())
        token = resp["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        if info["nonce"].native != nonce:
            raise TimestampError("the TSA answered with another nonce")
        der = bytes(token.dump())
    except (ValueError, TypeError, KeyError) as err:
        raise TimestampError(f"the TSA's answer is malformed: {err}") from err
    check = check_token(der, digest)
    if not check.ok:
        raise TimestampError(f"the TSA's token does not check: {check.problem}")
    return der


class LocalTsa:
    """The local CA's timestamping unit, in-process: ``timestamp`` answers a DER
    TimeStampReq with a DER TimeStampResp (``Trust.timestamp``)."""

    def __init__(self, timestamp: Callable[[bytes], Awaitable[bytes]]) -> None:
        self._timestamp = timestamp

    async def timestamp(self, digest: bytes) -> bytes:
        request, nonce = request_for(digest)
        return token_from_response(await self._timestamp(request), nonce, digest)


class HttpTsa:
    """An external RFC 3161 TSA over HTTP."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url, self._timeout = url, timeout_seconds

    async def timestamp(self, digest: bytes) -> bytes:
        request, nonce = request_for(digest)
        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            ) as http:
                async with http.post(
                    self._url,
                    data=request,
                    headers={"Content-Type": "application/timestamp-query"},
                ) as answer:
                    if answer.status != 200:
                        raise TimestampError(f"the TSA answered HTTP {answer.status}")
                    response = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TimestampError(f"the TSA cannot be reached: {err}") from err
        return token_from_response(response, nonce, digest)


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    gen_time: float | None
    """When the TSA says the digest existed (seconds since the epoch)."""
    tsa: str | None
    """The TSA certificate's subject."""
    chained: bool
    """Whether the TSA's certificate chains to one of the trusted roots given."""
    problem: str | None = None


def check_token(
    token: bytes, digest: bytes, trusted_roots: list[x509.Certificate] | None = None
) -> TokenCheck:
    """Verify a time-stamp token over ``digest`` offline (see the module's docstring)."""

    def bad(why: str, at: float | None = None, tsa: str | None = None) -> TokenCheck:
        return TokenCheck(False, at, tsa, False, why)

    try:
        content = cms.ContentInfo.load(token)
        signed = content["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            return bad("not a time-stamp token")
        raw_info = encap["content"].contents
        info = tsp.TSTInfo.load(raw_info)
        imprint = info["message_imprint"]
        gen_time = info["gen_time"].native.timestamp()
        if (
            imprint["hash_algorithm"]["algorithm"].native != "sha256"
            or imprint["hashed_message"].native != digest
        ):
            return bad("the timestamp is over other data", gen_time)
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in signed["certificates"] or []
            if c.name == "certificate"
        ]
        signer_info = signed["signer_infos"][0]
        sid = signer_info["sid"].chosen
        signer = next(
            (
                c
                for c in certs
                if c.serial_number == sid["serial_number"].native
                and c.issuer.public_bytes() == asn1_x509.Name.load(sid["issuer"].dump()).dump()
            ),
            None,
        )
        if signer is None:
            return bad("the timestamp does not carry its TSA's certificate", gen_time)
        tsa = signer.subject.rfc4514_string()
        attrs = signer_info["signed_attrs"]
        digest_attr = next(
            (a["values"][0].native for a in attrs if a["type"].native == "message_digest"),
            None,
        )
        if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
            return bad("the timestamp uses another digest than SHA-256", gen_time, tsa)
        if digest_attr != hashlib.sha256(raw_info).digest():
            return bad("the timestamp's content was changed", gen_time, tsa)
        # the signature covers the attributes as a SET OF, not as the [0] they are stored as
        _verify(signer, signer_info["signature"].native, b"\x31" + attrs.dump()[1:])
        try:
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return bad("the TSA's certificate may not time-stamp", gen_time, tsa)
        if x509.oid.ExtendedKeyUsageOID.TIME_STAMPING not in usage:
            return bad("the TSA's certificate may not time-stamp", gen_time, tsa)
        when = datetime.datetime.fromtimestamp(gen_time, datetime.UTC)
        if not signer.not_valid_before_utc <= when <= signer.not_valid_after_utc:
            return bad("the TSA's certificate was not valid at the time it gives", gen_time, tsa)
        chained = False
        if trusted_roots:
            chained = _chains(signer, certs, trusted_roots, when)
            if not chained:
                return bad("the TSA's certificate does not chain to a trusted root", gen_time, tsa)
        return TokenCheck(True, gen_time, tsa, chained)
    except InvalidSignature:
        return TokenCheck(False, None, None, False, "the timestamp's signature does not verify")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        return TokenCheck(False, None, None, False, f"the timestamp is malformed: {err}")


def _verify(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("the TSA's key is neither EC nor RSA")


def _may_issue(cert: x509.Certificate, when: datetime.datetime) -> bool:
    """A CA certificate that may sign certificates, valid at ``when``."""
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return (
        basic.ca
        and usage.key_cert_sign
        and cert.not_valid_before_utc <= when <= cert.not_valid_after_utc
    )


def _chains(
    cert: x509.Certificate,
    pool: list[x509.Certificate],
    roots: list[x509.Certificate],
    when: datetime.datetime,
) -> bool:
    """Whether ``cert`` is issued, through CA certificates of ``pool`` valid at
    ``when``, by a root (by signature, at most five steps)."""
    current = cert
    for _ in range(5):
        for root in roots:
            if current == root:
                return True
            try:
                current.verify_directly_issued_by(root)
                return True
            except (ValueError, TypeError, InvalidSignature):
                pass
        parent = None
        for candidate in pool:
            if candidate == current or not _may_issue(candidate, when):
                continue  # an end entity's key cannot vouch for another certificate
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            parent = candidate
            break
        if parent is None:
            return False
        current = parent
    return False


def tsa_for(config_url: str, timeout_seconds: float, local: LocalTsa) -> TimestampPort:
    """The configured TSA: an external one by URL, else the local CA's."""
    return HttpTsa(config_url, timeout_seconds) if config_url else local
