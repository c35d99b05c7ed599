"""Our own CA's addresses answered in-process.

The CRL and OCSP addresses in our certificates are the server's own (``/ca/...``) at the
address the server had when it issued them. Signing must not depend on reaching itself
there: after a restart on another port (or behind a proxy that loops back badly) those
URLs answer nothing. So when pyHanko's validator asks for a CRL, an OCSP response or an
issuer certificate at an address that one of *our* certificates names, the answer is
made here by the trust service (the same code the HTTP endpoints call); any other
address (an external TSA's chain, say) is fetched over HTTP as usual.

Which addresses are ours is read from the certificates themselves — the CRL
distribution points and the authority information access of certificates our root or
issuing CA signed — not guessed from the server's current URL, which may have changed.

The fetchers subclass pyhanko-certvalidator's aiohttp fetchers and override their
one-URL steps (``_fetch``, ``_single_fetch``, ``fetch_certs``), keeping their caching
and bookkeeping; pyhanko-certvalidator's version is pinned in pyproject.toml, and the
restart-on-another-port test fails if these hooks stop being called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
from asn1crypto import crl, tsp, x509
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import CertificateFetchError, CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.cert_fetch_client import (
    AIOHttpCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.crl_client import AIOHttpCRLFetcher
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.ocsp_client import AIOHttpOCSPFetcher
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import (
    FetchBudget,
    format_ocsp_request,
    process_ocsp_response_data,
)
from pyhanko_certvalidator.util import get_ocsp_urls

from ..errors import VideoidError

T = TypeVar("T")


class OwnCaError(VideoidError):
    code = "ca_unreachable"
    status = 503


class RelyingPartyAnswers(Protocol):
    """What relying parties ask of our CA (the trust service answers these, and so do
    its HTTP endpoints): a CRL (``root`` or ``issuing``), an OCSP response to a DER
    request, an RFC 3161 response to a DER request."""

    async def crl(self, which: str) -> bytes: ...
    async def ocsp(self, request: bytes) -> bytes: ...
    async def timestamp(self, request: bytes) -> bytes: ...


class OnLoop:
    """The answers of an object that lives on another event loop (the server's: its
    database connections belong there), callable from a signing thread's own loop."""

    def __init__(
        self,
        target: RelyingPartyAnswers,
        loop: asyncio.AbstractEventLoop,
        timeout_seconds: float,
    ) -> None:
        self._target, self._loop, self._timeout_seconds = target, loop, timeout_seconds

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        if asyncio.get_running_loop() is self._loop:
            return await asyncio.wait_for(call(), self._timeout_seconds)
        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_seconds)
        except TimeoutError:
            future.cancel()
            raise OwnCaError(f"the CA did not answer within {self._timeout_seconds:g} s") from None

    async def crl(self, which: str) -> bytes:
        return await self._call(lambda: self._target.crl(which))

    async def ocsp(self, request: bytes) -> bytes:
        return await self._call(lambda: self._target.ocsp(request))

    async def timestamp(self, request: bytes) -> bytes:
        return await self._call(lambda: self._target.timestamp(request))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    # the name is not enough to say "ours": the key identifier must match too
    return cert.authority_key_identifier in (None, issuer.key_identifier)


@dataclass(frozen=True)
class OwnAddresses:
    """The addresses that certificates signed by our root or issuing CA name, and
    what each one serves."""

    crls: Mapping[str, str] = field(default_factory=dict)
    """CRL distribution point URL -> ``root`` or ``issuing`` (whose CRL it is)."""
    ocsp: frozenset[str] = frozenset()
    """OCSP URLs (the issuing CA answers)."""
    certificates: Mapping[str, x509.Certificate] = field(default_factory=dict)
    """caIssuers URL -> the issuer's certificate."""

    @classmethod
    def of(
        cls,
        root: x509.Certificate,
        issuing: x509.Certificate,
        certificates: Iterable[x509.Certificate],
    ) -> OwnAddresses:
        crls: dict[str, str] = {}
        ocsp: set[str] = set()
        issuers: dict[str, x509.Certificate] = {}
        for cert in (issuing, *certificates):
            if _issued_by(cert, root):
                which, issuer = "root", root
            elif _issued_by(cert, issuing):
                which, issuer = "issuing", issuing
            else:
                continue  # not ours: its addresses are fetched over HTTP
            for point in cert.crl_distribution_points:
                name = point["distribution_point"]
                if name.name == "full_name":
                    for general in name.chosen:
                        if general.name == "uniform_resource_identifier":
                            crls[general.native] = which
            if which == "issuing":
                ocsp.update(cert.ocsp_urls)
            for access in cert.authority_information_access_value or ():
                if access["access_method"].native == "ca_issuers":
                    location = access["access_location"]
                    if location.name == "uniform_resource_identifier":
                        issuers[location.native] = issuer
        return cls(crls, frozenset(ocsp), issuers)


class _OwnOcspFetcher(AIOHttpOCSPFetcher):
    def __init__(self, addresses: OwnAddresses, answers: RelyingPartyAnswers, **kw: Any) -> None:
        super().__init__(**kw)
        self._own, self._answers = addresses, answers

    async def _fetch(self, cert: Any, authority: Authority) -> Any:
        ours = [url for url in get_ocsp_urls(cert) if url in self._own.ocsp]
        if not ours:
            return await super()._fetch(cert, authority)
        request = format_ocsp_request(
            cert,
            authority,
            certid_hash_algo=self.certid_hash_algo,
            request_nonces=self.request_nonces,
        )
        try:
            data = await self._answers.ocsp(request.dump())
        except VideoidError as err:
            raise OCSPFetchError(f"our CA's OCSP answer failed: {err.message}") from err
        return process_ocsp_response_data(data, ocsp_request=request, ocsp_url=ours[0])


class _OwnCrlFetcher(AIOHttpCRLFetcher):
    def __init__(self, addresses: OwnAddresses, answers: RelyingPartyAnswers, **kw: Any) -> None:
        super().__init__(**kw)
        self._own, self._answers = addresses, answers

    async def _single_fetch(self, url: str) -> Any:
        which = self._own.crls.get(url)
        if which is None:
            return await super()._single_fetch(url)  # type: ignore[no-untyped-call]

        async def task() -> crl.CertificateList:
            try:
                return crl.CertificateList.load(await self._answers.crl(which))
            except VideoidError as err:
                raise CRLFetchError(f"our CA's CRL failed: {err.message}") from err

        return await self._post_fetch_task(url, task)  # type: ignore[no-untyped-call]


class _OwnCertificateFetcher(AIOHttpCertificateFetcher):
    def __init__(self, addresses: OwnAddresses, **kw: Any) -> None:
        super().__init__(**kw)
        self._own = addresses

    async def fetch_certs(self, url: str, url_origin_type: str) -> Any:
        issuer = self._own.certificates.get(url)
        if issuer is None:
            return await super().fetch_certs(url, url_origin_type)  # type: ignore[no-untyped-call]

        async def task() -> list[x509.Certificate]:
            return [issuer]

        try:
            return await self._post_fetch_task(url, task)  # type: ignore[no-untyped-call]
        except VideoidError as err:  # pragma: no cover - the task cannot fail
            raise CertificateFetchError(str(err)) from err


class OwnCaFetcherBackend(FetcherBackend):
    """Fetchers that answer our CA's addresses in-process and fetch others with
    ``session``. Each :meth:`get_fetchers` starts empty: a new validation context
    fetches anew (which is the point of asking again after a timestamp)."""

    def __init__(
        self,
        addresses: OwnAddresses,
        answers: RelyingPartyAnswers,
        session: aiohttp.ClientSession,
        per_request_timeout_seconds: float,
    ) -> None:
        self._own, self._answers = addresses, answers
        self._session, self._timeout_seconds = session, per_request_timeout_seconds

    def get_fetchers(self) -> Fetchers:
        budget = FetchBudget(FetchLimits())
        common: dict[str, Any] = {
            "session": self._session,
            "per_request_timeout": self._timeout_seconds,
            "budget": budget,
        }
        return Fetchers(
            ocsp_fetcher=_OwnOcspFetcher(self._own, self._answers, **common),
            crl_fetcher=_OwnCrlFetcher(self._own, self._answers, **common),
            cert_fetcher=_OwnCertificateFetcher(self._own, **common),
        )


class OwnTsaTimeStamper(TimeStamper):
    """pyHanko's timestamper asking our CA's timestamping unit in-process."""

    def __init__(self, answers: RelyingPartyAnswers) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._answers = answers

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            return tsp.TimeStampResp.load(await self._answers.timestamp(req.dump()))
        except VideoidError as err:
            raise OSError(f"our TSA failed: {err.message}") from err
