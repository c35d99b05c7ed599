"""The local CA (R16, R18): a root and an issuing CA and a timestamping unit, their keys
generated in the PKCS#11 token and never out of it; customers' keys likewise, one per
customer, generated when they ask for their certificate.

Everything here is ASN.1 built with asn1crypto and signed in the token (ECDSA P-256;
the digest made here, the raw ``CKM_ECDSA`` signature made there, as SoftHSM wants):
certificates (RFC 5280, in the profile of ETSI EN 319 412-1/2/5 and EN 319 411-2 that
:mod:`.profile` describes), the CRL (RFC 5280), OCSP responses (RFC 6960, the issuing CA
answering itself) and timestamps (RFC 3161, with a signing-certificate-v2 attribute as
ETSI EN 319 422 asks). An external CA can stand in through the same methods.

The token calls block: callers run them in a thread (:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import pkcs11
from asn1crypto import algos, cms, core, crl, keys, ocsp, tsp, x509
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pyhanko.sign.ades import qualified_asn1  # noqa: F401  (registers qc_statements)

from ..errors import VideoidError
from .profile import PKIX_QC_SYNTAX_V2, SEMANTICS_NATURAL, CaProfile, customer_subject
from .token import Token

logger = logging.getLogger(__name__)

ROOT_KEY, ISSUING_KEY, TSA_KEY = "ca-root", "ca-issuing", "ca-tsa"
TSA_POLICY = "0.4.0.2023.1.1"
"""ETSI EN 319 421: the best-practices time-stamp policy, the only one the TSA serves."""
SIG = {"algorithm": "sha256_ecdsa"}
REASONS = (
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
)
"""The revocation reasons this CA writes. Not ``unspecified`` (RFC 5280 §5.3.1: leave
the reason out rather than say it), nor ``certificate_hold`` (a hold could never be
released here: a customer's key is destroyed when the certificate is revoked)."""


class SemanticsInformation(core.Sequence):  # type: ignore[misc]
    """RFC 3739's statement info of id-qcs-pkixQCSyntax-v2 (names left out: the
    identifier's country says who registered it)."""

    _fields = [("semantics_identifier", core.ObjectIdentifier, {"optional": True})]


class CaError(VideoidError):
    code = "ca_error"
    status = 409


class CertificateAuthority(Protocol):
    """The CA port: what the trust service asks of a CA. :class:`LocalCa` is the one
    shipped (its keys in the token); an external CA (a provider's, over its own API)
    implements the same and keeps customers' keys in the same token."""

    keys: TokenKeys
    root: x509.Certificate | None
    issuing: x509.Certificate | None
    tsa: x509.Certificate | None

    def create(self, now: float) -> list[Issued]: ...
    def load(self, root: bytes, issuing: bytes, tsa: bytes) -> None: ...
    def issue(self, key_label: str, fields: dict[str, str], now: float) -> Issued: ...
    def crl(
        self, revoked: list[tuple[str, float, str | None]], now: float, *, root: bool = False
    ) -> bytes: ...
    def ocsp(
        self,
        request: bytes,
        status_of: dict[str, tuple[str, float | None, str | None]],
        now: float,
    ) -> bytes: ...
    def timestamp(self, request: bytes, now: float) -> bytes: ...


CRL_DAYS = 1
ARL_DAYS = 365
"""The root's CRL: a year (CA/Browser Forum baseline requirements allow twelve months
for a root's revocation list)."""


def _time(at: float) -> x509.Time:
    dt = datetime.datetime.fromtimestamp(int(at), datetime.UTC)
    return x509.Time({"utc_time": dt} if dt.year < 2050 else {"general_time": dt})


def _gtime(at: float) -> core.GeneralizedTime:
    # whole seconds: openssl misreads fractions (it finds 13:00:00 before 12:00:00.5)
    return core.GeneralizedTime(datetime.datetime.fromtimestamp(int(at), datetime.UTC))


def _rejection(why: str) -> bytes:
    """A TimeStampResp with only its status (asn1crypto wants the token RFC 3161 makes
    optional, so the SEQUENCE is put together here)."""
    status = tsp.PKIStatusInfo({"status": "rejection", "fail_info": {why}}).dump()
    return bytes(core.Sequence.load(b"\x30" + _der_length(len(status)) + status).dump())


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _url(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _policies(*oids: str) -> dict[str, Any]:
    return {
        "extn_id": "certificate_policies",
        "critical": False,
        "extn_value": [{"policy_identifier": oid} for oid in oids],
    }


def new_serial() -> int:
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1  # positive, 127 bits


class TokenKeys:
    """EC P-256 key pairs in the token, by label: the private half sensitive, not
    extractable, for signing only."""

    def __init__(self, token: Token) -> None:
        self.token = token

    def generate(self, label: str) -> bytes:
        """A new key pair; its public key (SubjectPublicKeyInfo, DER)."""

        def work(session: Any) -> bytes:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            public, _ = params.generate_keypair(
                store=True,
                label=label,
                public_template={Attribute.VERIFY: True},
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                },
            )
            return bytes(encode_ec_public_key(public))

        try:
            return self.token.run(work)
        except pkcs11.exceptions.DeviceMemory as err:
            raise CaError(
                "the token has no room for another key; nothing was issued",
                code="token_full",
            ) from err
        except pkcs11.exceptions.PKCS11Error as err:
            raise CaError(
                f"the token cannot make a key ({type(err).__name__}); nothing was issued",
                code="token_error",
            ) from err

    def public_key(self, label: str) -> bytes | None:
        def work(session: Any) -> bytes | None:
            keys = _objects(session, ObjectClass.PUBLIC_KEY, label)
            return bytes(encode_ec_public_key(_only(keys, label))) if keys else None

        return self.token.run(work)

    def private_attributes(self, label: str) -> dict[str, Any]:
        """What the token says of the private key (for checks: never its value)."""

        def work(session: Any) -> dict[str, Any]:
            key = _only(_objects(session, ObjectClass.PRIVATE_KEY, label), label)
            return {
                "sensitive": key[Attribute.SENSITIVE],
                "extractable": key[Attribute.EXTRACTABLE],
                "always_sensitive": key[Attribute.ALWAYS_SENSITIVE],
                "never_extractable": key[Attribute.NEVER_EXTRACTABLE],
                "local": key[Attribute.LOCAL],
                "token": key[Attribute.TOKEN],
            }

        return self.token.run(work)

    def sign(self, label: str, data: bytes) -> bytes:
        """ECDSA with SHA-256 over ``data``: a DER signature."""
        digest = hashlib.sha256(data).digest()

        def work(session: Any) -> bytes:
            key = _only(_objects(session, ObjectClass.PRIVATE_KEY, label), label)
            return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

        raw = self.token.run(work)
        return bytes(algos.DSASignature.from_p1363(raw).dump())

    def destroy(self, label: str) -> None:
        """Remove both halves (a failed issuance leaves no orphan key)."""

        def work(session: Any) -> None:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in _objects(session, object_class, label):
                    obj.destroy()

        self.token.run(work)

    def exists(self, label: str) -> bool:
        def work(session: Any) -> bool:
            return bool(_objects(session, ObjectClass.PRIVATE_KEY, label))

        return self.token.run(work)

    def labels(self, prefix: str) -> set[str]:
        """The labels of the private keys whose label starts with ``prefix``."""

        def work(session: Any) -> set[str]:
            found = _objects(session, ObjectClass.PRIVATE_KEY, None)
            return {str(k.label) for k in found if str(k.label).startswith(prefix)}

        return self.token.run(work)


def _objects(session: Any, object_class: ObjectClass, label: str | None) -> list[Any]:
    """Every object of the class (and label), the search run to its end: python-pkcs11
    holds the session's operation lock until a search is exhausted, so a search left
    open (``get_key`` raising on two keys with one label) would hang every later use of
    the token."""
    template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
    if label is not None:
        template[Attribute.LABEL] = label
    return list(session.get_objects(template))


def _only(found: list[Any], label: str) -> Any:
    if not found:
        raise CaError(f"no key {label!r} in the token", code="key_not_found")
    if len(found) > 1:
        raise CaError(f"the token holds {len(found)} keys {label!r}", code="key_ambiguous")
    return found[0]


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key_label: str
    ca_url: str | None = None
    """Base of the CRL, OCSP and caIssuers addresses written in the certificate."""

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def sign_certificate(
    keys_: TokenKeys,
    issuer_label: str,
    issuer: x509.Certificate | None,
    subject: x509.Name,
    public_key: bytes,
    not_before: float,
    not_after: float,
    extensions: list[dict[str, Any]],
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key``, signed in the token by ``issuer_label``'s key
    (``issuer`` None: self-signed)."""
    spki = keys.PublicKeyInfo.load(public_key)
    issuer_name = subject if issuer is None else issuer.subject
    issuer_key_id = spki.sha1 if issuer is None else issuer.public_key.sha1
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial if serial is not None else new_serial(),
            "signature": SIG,
            "issuer": issuer_name,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": subject,
            "subject_public_key_info": spki,
            "extensions": [
                {"extn_id": "key_identifier", "critical": False, "extn_value": spki.sha1},
                {
                    "extn_id": "authority_key_identifier",
                    "critical": False,
                    "extn_value": {"key_identifier": issuer_key_id},
                },
                *extensions,
            ],
        }
    )
    signature = keys_.sign(issuer_label, tbs.dump())
    return x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": SIG, "signature_value": signature}
    )


def customer_name(fields: dict[str, str]) -> x509.Name:
    """The subject of a natural person's certificate (ETSI EN 319 412-2 §4.2.4): names
    as verified, the country and a natural person identifier of EN 319 412-1 §5.1.3
    (:func:`.profile.customer_subject`). Raises ``ProfileError``."""
    person = customer_subject(fields)
    return x509.Name.build(
        {
            "country_name": person.country,
            "given_name": fields["given_names"],
            "surname": fields["surname"],
            "common_name": f"{fields['given_names']} {fields['surname']}".strip(),
            "serial_number": person.serial_number,
        }
    )


class LocalCa:
    """The CA's certificates and keys: made on first use, kept in the token."""

    def __init__(self, keys_: TokenKeys, profile: CaProfile) -> None:
        self.keys = keys_
        self.profile = profile
        self.base_url = profile.base_url.rstrip("/")
        self.root: x509.Certificate | None = None
        self.issuing: x509.Certificate | None = None
        self.tsa: x509.Certificate | None = None

    # -- the CA's own ----------------------------------------------------------------

    def create(self, now: float) -> list[Issued]:
        """Root, issuing CA and timestamping unit: new keys in the token, new
        certificates. Refuses when the token holds keys under those labels already."""
        for label in (ROOT_KEY, ISSUING_KEY, TSA_KEY):
            if self.keys.exists(label):
                raise CaError(
                    f"the token already holds a key {label!r} but its certificate is not on"
                    " record: restore the database, or remove the key deliberately",
                    code="ca_inconsistent",
                )
        ca_usage = {
            "extn_id": "key_usage",
            "critical": True,
            "extn_value": {"key_cert_sign", "crl_sign", "digital_signature"},
        }
        org = self.profile.organization

        def ca_name(common_name: str) -> x509.Name:
            # EN 319 412-2 §4.2.3.1 wants the issuer's country, name and identifier
            return x509.Name.build(
                {
                    "country_name": self.profile.country,
                    "organization_name": org,
                    "organization_identifier": self.profile.organization_identifier,
                    "common_name": common_name,
                }
            )

        root_name = ca_name(f"{org} Root CA")
        root = sign_certificate(
            self.keys,
            ROOT_KEY,
            None,
            root_name,
            self.keys.generate(ROOT_KEY),
            now - 60,
            now + 20 * 365 * 86400,
            [
                {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": True}},
                ca_usage,
            ],
        )
        issuing = sign_certificate(
            self.keys,
            ROOT_KEY,
            root,
            ca_name(f"{org} Qualified CA"),
            self.keys.generate(ISSUING_KEY),
            now - 60,
            now + 10 * 365 * 86400,
            [
                {
                    "extn_id": "basic_constraints",
                    "critical": True,
                    "extn_value": {"ca": True, "path_len_constraint": 0},
                },
                ca_usage,
                # the policies it issues under: a relying party that asks for them
                # (RFC 5280 §6.1 with an initial policy set) finds them on the path
                _policies(self.profile.etsi_policy, self.profile.policy_oid),
                *self._revocation_pointers(root=True),
            ],
        )
        tsa = sign_certificate(
            self.keys,
            ROOT_KEY,
            root,
            ca_name(f"{org} Time-Stamping Unit"),
            self.keys.generate(TSA_KEY),
            now - 60,
            now + 10 * 365 * 86400,
            [
                {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}},
                {  # critical, as RFC 3161 §2.3 requires of a TSA's certificate
                    "extn_id": "extended_key_usage",
                    "critical": True,
                    "extn_value": ["time_stamping"],
                },
                _policies(TSA_POLICY, self.profile.policy_oid),
                *self._revocation_pointers(root=True),
            ],
        )
        self.root, self.issuing, self.tsa = root, issuing, tsa
        url = self.base_url
        return [
            Issued(root, ROOT_KEY, url),
            Issued(issuing, ISSUING_KEY, url),
            Issued(tsa, TSA_KEY, url),
        ]

    def load(self, root: bytes, issuing: bytes, tsa: bytes) -> None:
        """The CA's certificates from the database; their keys must be in the token."""
        for label in (ROOT_KEY, ISSUING_KEY, TSA_KEY):
            if not self.keys.exists(label):
                raise CaError(
                    f"the CA's key {label!r} is not in the token: is this the deployment's token?",
                    code="ca_key_missing",
                )
        self.root = x509.Certificate.load(root)
        self.issuing = x509.Certificate.load(issuing)
        self.tsa = x509.Certificate.load(tsa)

    def _revocation_pointers(self, root: bool = False) -> list[dict[str, Any]]:
        """CRL distribution point, OCSP address (the issuing CA's only) and the
        issuer's certificate (caIssuers), under ``ca.public_url`` as it is now; the
        root's CRL and certificate for the certificates the root signs."""
        base = self.base_url
        crl_url = f"{base}/ca/{'root' if root else 'issuing'}.crl"
        access = (
            [] if root else [{"access_method": "ocsp", "access_location": _url(f"{base}/ca/ocsp")}]
        )
        access.append(
            {
                "access_method": "ca_issuers",
                "access_location": _url(f"{base}/ca/{'root' if root else 'issuing'}.crt"),
            }
        )
        return [
            {
                "extn_id": "crl_distribution_points",
                "critical": False,
                "extn_value": [{"distribution_point": {"full_name": [_url(crl_url)]}}],
            },
            {"extn_id": "authority_information_access", "critical": False, "extn_value": access},
        ]

    # -- customers ---------------------------------------------------------------------

    def issue(self, key_label: str, fields: dict[str, str], now: float) -> Issued:
        """A customer's key in the token and their qualified certificate. If anything
        fails after the key is made, the key is destroyed: nothing half-issued stays."""
        assert self.issuing is not None, "the CA is not loaded"
        subject = customer_name(fields)  # before the key: refused data leave no key
        profile = self.profile
        statements: list[dict[str, Any]] = [{"statement_id": "qc_compliance"}]
        if profile.qscd:  # only a certified device is claimed (EN 319 412-5 §4.2.2)
            statements.append({"statement_id": "qc_sscd"})
        statements += [
            {"statement_id": "qc_type", "statement_info": ["qct_esign"]},
            {
                "statement_id": "qc_pki_disclosure_statements",
                "statement_info": [{"url": url, "language": lang} for url, lang in profile.pds],
            },
            {
                "statement_id": PKIX_QC_SYNTAX_V2,
                "statement_info": SemanticsInformation({"semantics_identifier": SEMANTICS_NATURAL}),
            },
        ]
        public_key = self.keys.generate(key_label)
        try:
            certificate = sign_certificate(
                self.keys,
                ISSUING_KEY,
                self.issuing,
                subject,
                public_key,
                now - 60,
                now + profile.customer_days * 86400,
                [
                    {"extn_id": "key_usage", "critical": True, "extn_value": {"non_repudiation"}},
                    _policies(profile.etsi_policy, profile.policy_oid),
                    {"extn_id": "qc_statements", "critical": False, "extn_value": statements},
                    *self._revocation_pointers(),
                ],
            )
        except BaseException:
            self.keys.destroy(key_label)
            raise
        return Issued(certificate, key_label, self.base_url)

    # -- revocation status ---------------------------------------------------------------

    def crl(
        self, revoked: list[tuple[str, float, str | None]], now: float, *, root: bool = False
    ) -> bytes:
        """The CRL of the issuing CA (valid for a day) or of the root (an authority
        revocation list: valid for a year, as the root revokes rarely and the time-stamping
        unit's status must still be read offline long after a document timestamp), from
        (serial hex, revoked at, reason) entries, numbered by time. A reason outside
        :data:`REASONS` (``unspecified`` or a hold on record from before) is left out,
        as RFC 5280 §5.3.1 asks."""
        issuer = self.root if root else self.issuing
        assert issuer is not None
        tbs: dict[str, Any] = {
            "version": "v2",
            "signature": SIG,
            "issuer": issuer.subject,
            "this_update": _time(now - 1),
            "next_update": _time(now + (ARL_DAYS if root else CRL_DAYS) * 86400),
            "crl_extensions": [
                {"extn_id": "crl_number", "critical": False, "extn_value": int(now * 1000)},
                {
                    "extn_id": "authority_key_identifier",
                    "critical": False,
                    "extn_value": {"key_identifier": issuer.public_key.sha1},
                },
            ],
        }
        if revoked:
            entries = []
            for serial, at, reason in revoked:
                entry: dict[str, Any] = {
                    "user_certificate": int(serial, 16),
                    "revocation_date": _time(at),
                }
                if reason in REASONS:
                    entry["crl_entry_extensions"] = [
                        {"extn_id": "crl_reason", "critical": False, "extn_value": reason}
                    ]
                entries.append(entry)
            tbs["revoked_certificates"] = entries
        body = crl.TbsCertList(tbs)
        signature = self.keys.sign(ROOT_KEY if root else ISSUING_KEY, body.dump())
        return bytes(
            crl.CertificateList(
                {"tbs_cert_list": body, "signature_algorithm": SIG, "signature": signature}
            ).dump()
        )

    def ocsp(
        self,
        request: bytes,
        status_of: dict[str, tuple[str, float | None, str | None]],
        now: float,
    ) -> bytes:
        """An OCSP response (the issuing CA answering) for each certificate asked
        about: ``status_of`` maps serial (hex) to (status, revoked at, reason) for the
        certificates this CA issued; others are ``unknown``."""
        issuer = self.issuing
        assert issuer is not None
        try:
            parsed = ocsp.OCSPRequest.load(request)
            asked = list(parsed["tbs_request"]["request_list"])
            extensions = parsed["tbs_request"]["request_extensions"]
            nonce = None
            for ext in extensions if extensions.native else ():
                if ext["extn_id"].native == "nonce":
                    nonce = ext
        except (ValueError, TypeError, KeyError):
            return bytes(ocsp.OCSPResponse({"response_status": "malformed_request"}).dump())
        name_digest = issuer.subject.dump()
        key_bits = issuer.public_key["public_key"].contents[1:]  # the BIT STRING's bits
        responses = []
        for single in asked:
            cert_id = single["req_cert"]
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
            try:
                ours = (
                    cert_id["issuer_name_hash"].native
                    == hashlib.new(algorithm, name_digest).digest()
                    and cert_id["issuer_key_hash"].native
                    == hashlib.new(algorithm, key_bits).digest()
                )
            except ValueError:
                ours = False
            serial = format(cert_id["serial_number"].native, "x")
            state = status_of.get(serial) if ours else None
            status: dict[str, Any]
            if state is None:
                status = {"unknown": core.Null()}
            elif state[0] == "revoked":
                revoked: dict[str, Any] = {"revocation_time": _gtime(state[1] or now)}
                if state[2] in REASONS:  # else left out, as in the CRL
                    revoked["revocation_reason"] = state[2]
                status = {"revoked": revoked}
            else:
                status = {"good": core.Null()}
            responses.append(
                {
                    "cert_id": cert_id,
                    "cert_status": status,
                    "this_update": _gtime(now),
                    "next_update": _gtime(now + 3600),
                }
            )
        data: dict[str, Any] = {
            "version": "v1",
            "responder_id": {"by_key": issuer.public_key.sha1},
            "produced_at": _gtime(now),
            "responses": responses,
        }
        if nonce is not None:  # echoed, so the client knows the answer is fresh
            data["response_extensions"] = [
                {"extn_id": "nonce", "critical": False, "extn_value": nonce["extn_value"].native}
            ]
        body = ocsp.ResponseData(data)
        basic = ocsp.BasicOCSPResponse(
            {
                "tbs_response_data": body,
                "signature_algorithm": SIG,
                "signature": self.keys.sign(ISSUING_KEY, body.dump()),
            }
        )
        return bytes(
            ocsp.OCSPResponse(
                {
                    "response_status": "successful",
                    "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
                }
            ).dump()
        )

    # -- timestamps ------------------------------------------------------------------------

    def timestamp(self, request: bytes, now: float) -> bytes:
        """An RFC 3161 response to a request: the TSTInfo signed in the token by the
        timestamping unit's key."""
        tsa = self.tsa
        assert tsa is not None
        try:
            req = tsp.TimeStampReq.load(request)
            req.native  # noqa: B018  (parse it all now: a malformed request fails here)
            imprint = req["message_imprint"]
        except (ValueError, TypeError, KeyError):
            return _rejection("bad_data_format")
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        if algorithm not in ("sha256", "sha384", "sha512"):
            return _rejection("bad_alg")
        asked = req["req_policy"].native
        if asked is not None and asked != TSA_POLICY:  # RFC 3161 §2.4.2: not granted
            return _rejection("unaccepted_policy")
        at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        info: dict[str, Any] = {
            "version": "v1",
            "policy": TSA_POLICY,
            "message_imprint": imprint,
            "serial_number": new_serial(),
            "gen_time": at,
            "accuracy": {"seconds": 1},
            "tsa": x509.GeneralName(name="directory_name", value=tsa.subject),
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"]
        tst_info = tsp.TSTInfo(info).dump()
        cert_hash = hashlib.sha256(tsa.dump()).digest()
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "signing_time", "values": [cms.Time({"utc_time": core.UTCTime(at)})]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_info).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [
                        {
                            "certs": [
                                {
                                    "cert_hash": cert_hash,
                                    "issuer_serial": {
                                        "issuer": [
                                            x509.GeneralName(
                                                name="directory_name", value=tsa.issuer
                                            )
                                        ],
                                        "serial_number": tsa.serial_number,
                                    },
                                }
                            ]
                        }
                    ],
                },
            ]
        )
        signature = self.keys.sign(TSA_KEY, signed_attrs.dump())
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": {
                    "issuer_and_serial_number": {
                        "issuer": tsa.issuer,
                        "serial_number": tsa.serial_number,
                    }
                },
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": signed_attrs,
                "signature_algorithm": SIG,
                "signature": signature,
            }
        )
        certificates = [tsa] if req["cert_req"].native else []
        signed = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": cms.ParsableOctetString(tst_info),
                },
                "certificates": certificates,
                "signer_infos": [signer],
            }
        )
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
        return bytes(
            tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()
        )
