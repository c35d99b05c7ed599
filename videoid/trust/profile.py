"""The certificate profile (R19): what the local CA writes in its names, policies and
qualified statements, after ETSI EN 319 412-1/2/5 and EN 319 411-2, and the checks of
its settings made when the configuration is loaded.

Pure: no token, no I/O. :mod:`.ca` builds the certificates from :class:`CaProfile`
and :func:`customer_subject`.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, VideoidError
from .countries import ISO_ALPHA2, NO_COUNTRY, alpha2

if TYPE_CHECKING:
    from ..config import Config

QCP_N = "0.4.0.194112.1.0"
"""EN 319 411-2: qualified certificate for a natural person (key not in a QSCD)."""
QCP_N_QSCD = "0.4.0.194112.1.2"
"""EN 319 411-2: qualified certificate for a natural person, key in a QSCD."""
SEMANTICS_NATURAL = "0.4.0.194121.1.1"
"""EN 319 412-1 §5.1.3: the subject's serialNumber is a natural person identifier."""
PKIX_QC_SYNTAX_V2 = "1.3.6.1.5.5.7.11.2"
"""RFC 3739: the qualified statement carrying the semantics identifier."""
PDS_LANGUAGES = ("en", "it", "ro", "pl")
"""The languages of the PKI disclosure statement when ``ca.pds_urls`` is not set."""

_ORG_ID = re.compile(r"^(VAT|NTR|PSD|LEI|[A-Z]{2}:)([A-Z]{2})-[^\s]+$")
_ALL_ALPHA2 = set(ISO_ALPHA2.values())
_USER_ASSIGNED = re.compile(r"^(AA|Q[M-Z]|X[A-Z]|ZZ)$")
_TRANSNATIONAL = {"UNO": "UN", "UNA": "UN", "EUE": "EU"}
"""Organisations that issue travel documents (United Nations laissez-passer, EU
laissez-passer): EN 319 412-1 identifiers name them by their transnational codes."""


class ProfileError(VideoidError):
    """The verified data do not make a certificate the profile allows."""

    code = "profile_error"
    status = 409


def check_policy_oid(oid: str) -> str:
    """``oid`` if it is a dotted OID every X.509 parser reads: four arcs or more, the
    first 0, 1 or 2, the second under 40 (the first two then fit one byte, as several
    parsers, pkilint's among them, require), each arc under 2^28 (at most four bytes:
    a UUID under 2.25 is 128 bits, which those parsers refuse). Raises
    :class:`ConfigError` ``policy_oid_invalid``."""
    arcs = oid.split(".")
    ok = len(arcs) >= 4 and all(a.isdigit() and (a == "0" or a[0] != "0") for a in arcs)
    if ok:
        numbers = [int(a) for a in arcs]
        ok = numbers[0] <= 2 and numbers[1] < 40 and all(n < 2**28 for n in numbers)
    if not ok:
        raise ConfigError(
            f"ca.policy_oid: {oid!r} is not an OID certificate parsers read (dotted"
            " decimal, four arcs or more, each below 2^28, the second below 40: e.g."
            " under your private enterprise number, 1.3.6.1.4.1.<PEN>.1)",
            code="policy_oid_invalid",
        )
    return oid


def check_country(country: str) -> str:
    """An ISO 3166-1 alpha-2 code, or a user-assigned one (development)."""
    if country not in _ALL_ALPHA2 and not _USER_ASSIGNED.match(country):
        raise ConfigError(
            f"ca.country: {country!r} is not an ISO 3166-1 alpha-2 code", code="ca_country_invalid"
        )
    return country


def check_organization_identifier(value: str) -> str:
    """EN 319 412-1 §5.1.4: three letters of scheme (VAT, NTR, PSD, LEI, or a national
    ``XX:``), the country, a hyphen, the reference (``VATIT-12345678901``)."""
    if not _ORG_ID.match(value):
        raise ConfigError(
            f"ca.organization_identifier: {value!r} is not of the form of EN 319 412-1"
            " §5.1.4 (e.g. VATIT-12345678901, NTRDE-HRB123456)",
            code="organization_identifier_invalid",
        )
    return value


def check_pds_urls(entries: tuple[str, ...]) -> tuple[str, ...]:
    """``lang=https://...`` entries (EN 319 412-5: ISO 639-1 language, HTTPS URL)."""
    for entry in entries:
        lang, _, url = entry.partition("=")
        parsed = urllib.parse.urlsplit(url.strip())
        if (
            not re.fullmatch(r"[a-z]{2}", lang.strip())
            or parsed.scheme != "https"
            or (not parsed.hostname)
        ):
            raise ConfigError(
                f"ca.pds_urls: {entry!r} is not 'language=https://…' (a two-letter"
                " ISO 639-1 language and an HTTPS address)",
                code="pds_url_invalid",
            )
    return entries


def check_ca_public_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if url and (parsed.scheme != "http" or not parsed.hostname or parsed.query):
        raise ConfigError(
            f"ca.public_url: {url!r} is not a plain http:// address (relying parties"
            " fetch CRLs, OCSP and CA certificates over http, RFC 5280 §4.2.1.13)",
            code="ca_public_url_invalid",
        )
    return url


def ca_base_url(config: Config) -> str:
    """The base of the CRL, OCSP and CA certificate addresses written in new
    certificates: ``ca.public_url``; else the host of ``server.public_url`` over plain
    http (port 80, as a reverse proxy serves it); else the server's host and port."""
    if config.ca.public_url:
        return config.ca.public_url.rstrip("/")
    if config.server.public_url:
        host = urllib.parse.urlsplit(config.server.public_url).hostname or "localhost"
        return f"http://{host}"
    return config.base_url()


def pds_locations(config: Config, ca_url: str) -> tuple[tuple[str, str], ...]:
    """(url, language) of each PKI disclosure statement: ``ca.pds_urls``, else
    ``https://<the CA's host>/pds/<language>.pdf`` for :data:`PDS_LANGUAGES`."""
    if config.ca.pds_urls:
        out = []
        for entry in config.ca.pds_urls:
            lang, _, url = entry.partition("=")
            out.append((url.strip(), lang.strip()))
        return tuple(out)
    host = urllib.parse.urlsplit(ca_url).hostname or "localhost"
    return tuple((f"https://{host}/pds/{lang}.pdf", lang) for lang in PDS_LANGUAGES)


@dataclass(frozen=True)
class CaProfile:
    """What the CA writes in its certificates."""

    organization: str
    """organizationName of the CA's own certificates."""
    country: str
    """countryName of the CA's own certificates (ISO 3166-1 alpha-2)."""
    organization_identifier: str
    """organizationIdentifier of the CA's own certificates (EN 319 412-1 §5.1.4)."""
    policy_oid: str
    """The provider's certificate policy, in the issuing CA's and customers' policies."""
    base_url: str
    """Base of the CRL, OCSP and caIssuers addresses in new certificates (http)."""
    pds: tuple[tuple[str, str], ...]
    """(HTTPS URL, ISO 639-1 language) of each PKI disclosure statement (QcPDS)."""
    qscd: bool
    """Whether customers' keys are in a certified QSCD: only then QcSSCD and
    QCP-n-qscd; otherwise QCP-n."""
    customer_days: int = 3 * 365

    @classmethod
    def from_config(cls, config: Config) -> CaProfile:
        base = ca_base_url(config)
        return cls(
            organization=config.ca.organization,
            country=config.ca.country,
            organization_identifier=config.ca.organization_identifier,
            policy_oid=config.ca.policy_oid,
            base_url=base,
            pds=pds_locations(config, base),
            qscd=config.pkcs11.qscd,
            customer_days=config.ca.customer_days,
        )

    @property
    def etsi_policy(self) -> str:
        return QCP_N_QSCD if self.qscd else QCP_N


@dataclass(frozen=True)
class PersonName:
    """The subject attributes of a natural person (EN 319 412-2 §4.2.4)."""

    country: str
    """countryName: ISO 3166-1 alpha-2."""
    serial_number: str
    """A natural person identifier (EN 319 412-1 §5.1.3): TYPE + country + "-" + id."""


def _document_country(code: str) -> str | None:
    code = code.strip().strip("<").upper()
    return alpha2(code) or _TRANSNATIONAL.get(code)


def customer_subject(fields: dict[str, str]) -> PersonName:
    """The customer's country and identifier from the verified data.

    The country is the nationality's; for the ICAO codes that name no country
    (stateless, refugees, United Nations officials…) the document's issuing state's;
    if neither names a country, :class:`ProfileError` ``country_unknown``.

    The identifier is the Italian tax code (``TINIT-``) when there is one, else the
    document's number: ``PAS`` for a passport, ``IDC`` for an identity card, with the
    country of the state (or organisation: ``UN``, ``EU``) that issued it."""
    nationality = fields.get("nationality", "")
    issuing_state = fields.get("issuing_state", "") or nationality
    country = alpha2(nationality) or alpha2(issuing_state)
    if country is None:
        nationality = nationality.strip("<").upper()
        why = NO_COUNTRY.get(nationality, f"the code {nationality!r}")
        raise ProfileError(
            f"the nationality ({why}) and the document's issuing state name no country;"
            " a qualified certificate needs one",
            code="country_unknown",
        )
    if fields.get("tax_code"):
        return PersonName(country, f"TINIT-{fields['tax_code'].strip().upper()}")
    number = fields.get("document_number", "").strip().strip("<").upper()
    if not number:
        raise ProfileError(
            "neither a tax code nor a document number to identify the customer",
            code="identifier_missing",
        )
    kind = fields.get("document_type", "")
    passport = kind == "passport" or fields.get("document_code", "").upper().startswith("P")
    issuer = _document_country(issuing_state) or country
    return PersonName(country, f"{'PAS' if passport else 'IDC'}{issuer}-{number}")
