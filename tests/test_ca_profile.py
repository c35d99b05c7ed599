"""The certificate profile (R19), checked by pkilint (DigiCert's linter, from PyPI):
every certificate the local CA issues, its CRLs and an OCSP answer lint without an
error, warning or notice that is not allowed below with its reason; the qualification
says what the key's device is; the settings that would make unreadable certificates
are refused at start; the TSA serves only its policy; a revoked key leaves the token;
the revocation addresses stay answered when the server comes back on another port."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pkilint import etsi, finding_filter, loader, pkix
from pkilint.cabf import cabf_crl
from pkilint.etsi.etsi_constants import CertificateType
from pkilint.pkix import certificate, crl, extension, name, ocsp

from videoid.config import load_config
from videoid.errors import ConfigError
from videoid.trust import countries
from videoid.trust.profile import ProfileError, customer_subject

from .conftest import StartServer

PROVIDER = {
    "public_url": "http://ca.example.org",  # a public name: pkilint refuses 127.0.0.1
    "country": "IT",
    "organization_identifier": "VATIT-00000000000",
}
PASSPORT = {  # ICAO Doc 9303's German specimen: "D" for Germany
    "surname": "MUSTERMANN",
    "given_names": "ERIKA",
    "document_number": "C01X00T47",
    "nationality": "D",
    "issuing_state": "D",
    "document_type": "passport",
}
ID_CARD = {
    "surname": "POPESCU",
    "given_names": "ANA",
    "document_number": "RX123456",
    "nationality": "ROU",
    "issuing_state": "ROU",
    "document_type": "id_card",
}
TAX_CODE = {
    "surname": "LOVELACE",
    "given_names": "ADA AUGUSTA",
    "document_number": "CA12345BX",
    "nationality": "ITA",
    "tax_code": "LVLDGS85T50Z114X",
}
UTOPIAN = {**ID_CARD, "nationality": "UTO", "issuing_state": "UTO"}

SIGNIFICANT = {"NOTICE", "WARNING", "ERROR", "FATAL"}
CA_END_ENTITY_RULES = {
    # pkilint's ETSI types are all end-entity ones (EN 319 412-2/3); a CA's key usage
    # is keyCertSign and cRLSign (RFC 5280 §4.2.1.3), which NAT-4.3.2-1 does not know
    "etsi.en_319_412_2.nat-4.3.2-1.unknown_key_usage_setting": "a CA's key usage",
}
ROOT_ONLY = {
    # a self-signed trust anchor: no issuer to point to, revoked by leaving the trust
    # list, and policy processing (RFC 5280 §6.1) starts under it
    "etsi.en_319_412_2.certificate_policies_extension_absent": "the root lists no policy",
    "etsi.en_319_412_2.authority_info_access_extension_absent": "the root has no issuer",
    "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing": "the root is a trust anchor",
}
TSA_ONLY = {
    # RFC 3161 §2.3: a TSA's extended key usage MUST be critical (EN 319 422 §7.2 too)
    "etsi.en_319_412_2.gen-4.3.10-1.eku_extension_is_critical": "RFC 3161 §2.3",
}
UTOPIA_ONLY = {
    # the fictitious test state UTO becomes the ISO user-assigned code XU, which names
    # no country on purpose: a test certificate must never pass for a real state's
    "etsi.en_319_412_1.nat-5.1.3.invalid_identifier_country": "UTO is fictitious (XU)",
}


def findings(results: Any) -> list[tuple[str, str, str]]:
    return [
        (str(f.finding.severity), f.finding.code, f.message or "")
        for r in results
        for f in r.finding_descriptions
        if str(f.finding.severity) in SIGNIFICANT
    ]


def unexplained(found: list[tuple[str, str, str]], allowed: dict[str, str]) -> list[Any]:
    return [f for f in found if f[1] not in allowed]


def lint_pkix_cert(der: bytes) -> list[tuple[str, str, str]]:
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return findings(validator.validate(doc.root))


def lint_etsi(
    der: bytes, kind: CertificateType | None = None
) -> tuple[CertificateType, list[tuple[str, str, str]]]:
    """As ``lint_etsi lint --detect`` (or ``--type``), with its finding filters."""
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
    kind = kind or etsi.determine_certificate_type(doc)
    validator = certificate.create_pkix_certificate_validator_container(
        etsi.create_decoding_validators(kind), etsi.create_validators(kind)
    )
    results, _ = finding_filter.filter_results(
        etsi.create_etsi_finding_filters(kind), validator.validate(doc.root)
    )
    return kind, findings(results)


def lint_crl(der: bytes) -> list[tuple[str, str, str]]:
    """As ``lint_crl lint -t CRL -p PKIX``, with the CA/B Forum's reason allow-list
    (which refuses ``unspecified`` and ``certificateHold``) added."""
    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    kind = crl.CertificateRevocationListType.CRL
    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
            cabf_crl.CabfCrlReasonCodeAllowlistValidator(kind),
        ],
    )
    return findings(validator.validate(doc.root))


def lint_ocsp_response(der: bytes) -> list[tuple[str, str, str]]:
    doc = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [
            ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
    return findings(validator.validate(doc.root))


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)


def pem(der: bytes, path: Path) -> Path:
    path.write_bytes(openssl("x509", "-inform", "der", "-outform", "pem", data=der).stdout)
    return path


def ocsp_request(issuing: Path, cert: Path, out: Path) -> bytes:
    done = openssl("ocsp", "-issuer", str(issuing), "-cert", str(cert), "-reqout", str(out))
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


@pytest.mark.parametrize("qscd", [False, True], ids=["softhsm", "qscd"])
async def test_R19_every_certificate_crl_and_ocsp_answer_lints_clean(
    start_server: StartServer, tmp_path: Path, qscd: bool
) -> None:
    server = await start_server(ca=PROVIDER, pkcs11={"qscd": qscd})
    trust = server.services.trust
    assert trust.qscd is qscd
    ca = await trust.ca()
    assert ca.root is not None and ca.issuing is not None and ca.tsa is not None
    for which, allowed in (
        ("root", {**CA_END_ENTITY_RULES, **ROOT_ONLY}),
        ("issuing", CA_END_ENTITY_RULES),
        ("tsa", TSA_ONLY),
    ):
        der = await trust.certificate(which)
        assert lint_pkix_cert(der) == [], which
        kind, found = lint_etsi(der, CertificateType.NCP_LEGAL_PERSON_CERTIFICATE)
        assert unexplained(found, allowed) == [], (which, found)
        subject = asn1_x509.Certificate.load(der).subject.native
        assert subject["country_name"] == "IT", which
        assert subject["organization_identifier"] == "VATIT-00000000000", which
    issuing = asn1_x509.Certificate.load(await trust.certificate("issuing"))
    assert [p["policy_identifier"].dotted for p in issuing.certificate_policies_value] == [
        "0.4.0.194112.1.2" if qscd else "0.4.0.194112.1.0",
        server.services.config.ca.policy_oid,
    ]

    issued = {}
    for label, fields in (
        ("passport", PASSPORT),
        ("id_card", ID_CARD),
        ("tax_code", TAX_CODE),
        ("utopia", UTOPIAN),
    ):
        invitation = await server.invite()
        issued[label] = await trust.issue(invitation.session_id, fields)
    for label, record in issued.items():
        cert = asn1_x509.Certificate.load(record.der)
        assert lint_pkix_cert(record.der) == [], label
        kind, found = lint_etsi(record.der)
        # pkilint knows QCP-n-qscd; a QCP-n certificate (no QSCD) it takes for NCP
        # natural person, the nearest profile it has, and checks as that
        expected_kind = (
            CertificateType.QCP_N_QSCD_EIDAS_FINAL_CERTIFICATE
            if qscd
            else CertificateType.NCP_NATURAL_PERSON_CERTIFICATE
        )
        assert kind == expected_kind, label
        assert unexplained(found, UTOPIA_ONLY if label == "utopia" else {}) == [], (label, found)
        extensions = {e["extn_id"].native: e for e in cert["tbs_certificate"]["extensions"]}
        statements = [s["statement_id"] for s in extensions["qc_statements"]["extn_value"].native]
        assert ("qc_sscd" in statements) is qscd, label
        assert cert.crl_distribution_points[0].url == "http://ca.example.org/ca/issuing.crl"
        assert cert.ocsp_urls == ["http://ca.example.org/ca/ocsp"]
        assert record.ca_url == "http://ca.example.org"
    serials = {
        label: asn1_x509.Certificate.load(r.der).subject.native["serial_number"]
        for label, r in issued.items()
    }
    assert serials == {
        "passport": "PASDE-C01X00T47",
        "id_card": "IDCRO-RX123456",
        "tax_code": "TINIT-LVLDGS85T50Z114X",
        "utopia": "IDCXU-RX123456",
    }

    # the CRLs, one with a revocation, and OCSP answers good and revoked
    await trust.revoke(issued["id_card"].serial, "key_compromise", "test")
    for which in ("issuing", "root"):
        assert lint_crl(await trust.crl(which)) == [], which
    issuing_pem = pem(issuing.dump(), tmp_path / "issuing.pem")
    for label in ("passport", "id_card"):
        mine = pem(issued[label].der, tmp_path / f"{label}.pem")
        answer = await trust.ocsp(ocsp_request(issuing_pem, mine, tmp_path / f"{label}.req"))
        assert lint_ocsp_response(answer) == [], label
        status = asn1_ocsp.OCSPResponse.load(answer).basic_ocsp_response["tbs_response_data"]
        state = status["responses"][0]["cert_status"].name
        assert state == ("revoked" if label == "id_card" else "good")


def test_R19_the_policy_oid_and_the_ca_settings_are_checked_at_start() -> None:
    def load(**ca: Any) -> Any:
        return load_config(environ={}, overrides={"ca": ca})

    # the old default (a UUID under 2.25), the example arc 2.999, two arcs: unreadable
    for oid in ("2.25.329800735698586629295641978511506172918", "2.999.1", "1.3", "1.3.x"):
        with pytest.raises(ConfigError) as refused:
            load(policy_oid=oid)
        assert refused.value.code == "policy_oid_invalid", oid
    assert load(policy_oid="1.3.6.1.4.1.32473.7").ca.policy_oid == "1.3.6.1.4.1.32473.7"
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"VIDEOID_CA_POLICY_OID": "2.25.1"})
    assert refused.value.code == "policy_oid_invalid"
    for key, value, code in (
        ("country", "ITA", "ca_country_invalid"),
        ("organization_identifier", "IT00000000000", "organization_identifier_invalid"),
        ("public_url", "https://ca.example.org", "ca_public_url_invalid"),
        ("pds_urls", ["en=http://example.org/pds.pdf"], "pds_url_invalid"),
        ("pds_urls", ["english=https://example.org/pds.pdf"], "pds_url_invalid"),
    ):
        with pytest.raises(ConfigError) as refused:
            load(**{key: value})
        assert refused.value.code == code, (key, value)


def test_R19_countries_from_the_machine_readable_zone() -> None:
    iso = json.loads(Path("/usr/share/iso-codes/json/iso_3166-1.json").read_text())
    assert {c["alpha_3"]: c["alpha_2"] for c in iso["3166-1"]} == countries.ISO_ALPHA2
    assert countries.alpha2("D") == countries.alpha2("D<<") == "DE"
    for code in ("GBD", "GBN", "GBO", "GBP", "GBS"):
        assert countries.alpha2(code) == "GB"
    for code in ("UNO", "UNA", "UNK", "XXA", "XXB", "XXC", "XXX", "EUE"):
        assert countries.alpha2(code) is None, code
    assert countries.alpha2("UTO") == "XU"
    person = dict(PASSPORT)
    # a stateless person or a refugee: the country of the state that issued the document
    for status in ("XXA", "XXB", "XXC", "XXX"):
        got = customer_subject({**person, "nationality": status, "issuing_state": "DEU"})
        assert (got.country, got.serial_number) == ("DE", "PASDE-C01X00T47")
    # a United Nations laissez-passer: the person's nationality, the identifier UN's
    got = customer_subject({**person, "nationality": "FRA", "issuing_state": "UNO"})
    assert (got.country, got.serial_number) == ("FR", "PASUN-C01X00T47")
    got = customer_subject({**person, "nationality": "GBN", "issuing_state": "GBR"})
    assert (got.country, got.serial_number) == ("GB", "PASGB-C01X00T47")
    with pytest.raises(ProfileError) as refused:
        customer_subject({**person, "nationality": "UNO", "issuing_state": "UNO"})
    assert refused.value.code == "country_unknown"
    with pytest.raises(ProfileError) as refused:
        customer_subject({**person, "document_number": ""})
    assert refused.value.code == "identifier_missing"
    # the document code says passport when the type is not known
    got = customer_subject({**ID_CARD, "document_type": "", "document_code": "P"})
    assert got.serial_number == "PASRO-RX123456"


async def test_R19_the_tsa_refuses_a_policy_it_does_not_serve(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    data = tmp_path / "contract.pdf"
    data.write_bytes(b"%PDF-1.7 a contract")
    out = {}
    async with aiohttp.ClientSession() as http:
        for policy in ("1.2.3.4.5", "0.4.0.2023.1.1"):
            query = tmp_path / f"{policy}.tsq"
            done = openssl(
                "ts", "-query", "-data", str(data), "-sha256", "-tspolicy", policy,
                "-out", str(query),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            async with http.post(
                f"{server.url}/tsa",
                data=query.read_bytes(),
                headers={"Content-Type": "application/timestamp-query"},
            ) as r:
                (tmp_path / f"{policy}.tsr").write_bytes(await r.read())
            text = openssl("ts", "-reply", "-in", str(tmp_path / f"{policy}.tsr"), "-text")
            out[policy] = (text.stdout + text.stderr).decode()
    assert "Status: Rejected" in out["1.2.3.4.5"], out
    assert "the requested TSA policy is not supported" in out["1.2.3.4.5"], out
    assert "Status: Granted" in out["0.4.0.2023.1.1"], out


async def test_R19_revocation_destroys_the_key_and_refuses_hold_and_unspecified(
    start_server: StartServer,
) -> None:
    server = await start_server()
    trust = server.services.trust
    ca = await trust.ca()
    invitation = await server.invite()
    record = await trust.issue(invitation.session_id, TAX_CODE)
    label = record.key_label
    for reason, code in (
        ("certificate_hold", "hold_not_supported"),
        ("unspecified", "revocation_reason_required"),
        ("remove_from_crl", "invalid_revocation_reason"),
    ):
        with pytest.raises(Exception) as refused:
            await trust.revoke(record.serial, reason, "test")
        assert getattr(refused.value, "code", "") == code, reason
    assert await asyncio.to_thread(ca.keys.exists, label)
    assert (await server.services.repo.find_certificate(record.serial)).status == "good"  # type: ignore[union-attr]
    revoked = await trust.revoke(record.serial, "privilege_withdrawn", "test")
    assert revoked.status == "revoked"
    assert not await asyncio.to_thread(ca.keys.exists, label)
    assert await asyncio.to_thread(ca.keys.public_key, label) is None
    text = openssl("crl", "-inform", "der", "-noout", "-text", data=await trust.crl("issuing"))
    assert b"Privilege Withdrawn" in text.stdout


async def test_R19_the_revocation_addresses_are_kept_and_answered_on_another_port(
    start_server: StartServer, tmp_path: Path
) -> None:
    data_dir = str(tmp_path / "kept")
    first = await start_server(server={"data_dir": data_dir})
    invitation = await first.invite()
    record = await first.services.trust.issue(invitation.session_id, PASSPORT)
    assert record.ca_url == first.url
    await first.stop()

    again = await start_server(server={"data_dir": data_dir})  # another port
    trust = again.services.trust
    assert again.url != first.url and trust.ca_url == again.url
    assert {first.url, again.url} <= await trust.own_urls()
    cert = asn1_x509.Certificate.load(record.der)
    assert cert.ocsp_urls == [f"{first.url}/ca/ocsp"]  # as written when issued
    # in process, whatever the port: the CRL, the issuer, OCSP (POST and GET)
    crl_der = await trust.answer(cert.crl_distribution_points[0].url)
    assert crl_der is not None and lint_crl(crl_der) == []
    assert await trust.answer(f"{first.url}/ca/issuing.crt") == await trust.certificate("issuing")
    issuing_pem = pem(await trust.certificate("issuing"), tmp_path / "issuing.pem")
    request = ocsp_request(issuing_pem, pem(record.der, tmp_path / "c.pem"), tmp_path / "r")
    for answer in (
        await trust.answer(cert.ocsp_urls[0], request),
        await trust.answer(f"{cert.ocsp_urls[0]}/{base64.b64encode(request).decode()}"),
    ):
        assert answer is not None
        response = asn1_ocsp.OCSPResponse.load(answer).basic_ocsp_response
        assert response["tbs_response_data"]["responses"][0]["cert_status"].name == "good"
    assert await trust.answer("http://elsewhere.example.org/ca/issuing.crl") is None
    # and over HTTP at the new port
    async with aiohttp.ClientSession() as http, http.get(f"{again.url}/ca/issuing.crl") as r:
        assert r.status == 200 and lint_crl(await r.read()) == []
