"""The local CA against a real SoftHSM2 token, checked by independent tools: the
customer's key is generated in the token, sensitive and never extractable; the
certificate carries the qualified statements, the policies and the revocation
pointers; openssl and pyhanko-certvalidator accept the chain and see it good, then
revoked at once after ``videoid cert revoke``, by OCSP and by CRL; the timestamping
unit answers RFC 3161 requests openssl verifies (R16, R18)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

from videoid.db.repository import CertificateRecord
from videoid.trust.ca import ISSUING_KEY, ROOT_KEY, TSA_KEY

from .conftest import ROOT, Server, StartServer

FIELDS = {
    "surname": "LOVELACE",
    "given_names": "ADA AUGUSTA",
    "document_number": "CA12345BX",
    "date_of_birth": "1985-12-10",
    "nationality": "ITA",
    "tax_code": "LVLDGS85T50Z114X",
}


def openssl(*args: str, data: bytes | None = None) -> str:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    return (done.stdout + done.stderr).decode(errors="replace")


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def pem(der: bytes, path: Path) -> Path:
    path.write_text(openssl("x509", "-inform", "der", "-outform", "pem", data=der))
    return path


async def customer(server: Server) -> tuple[str, CertificateRecord]:
    invitation = await server.invite()
    record = await server.services.trust.issue(invitation.session_id, FIELDS)
    return invitation.session_id, record


async def test_issuance_in_the_token_and_revocation_seen_at_once(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    services = server.services
    _session_id, record = await customer(server)
    ca = await services.trust.ca()

    # the keys: in the token, generated there, sensitive, never extractable
    for label in (ROOT_KEY, ISSUING_KEY, TSA_KEY, record.key_label):
        attributes = await asyncio.to_thread(ca.keys.private_attributes, label)
        assert attributes == {
            "sensitive": True, "extractable": False, "always_sensitive": True,
            "never_extractable": True, "local": True, "token": True,
        }, (label, attributes)  # fmt: skip

    # the certificate's content
    cert = asn1_x509.Certificate.load(record.der)
    subject = cert.subject.native
    assert subject["common_name"] == "ADA AUGUSTA LOVELACE" and subject["country_name"] == "IT"
    assert subject["serial_number"] == "TINIT-LVLDGS85T50Z114X"
    assert cert.key_usage_value.native == {"non_repudiation"}
    assert cert.key_usage_value is not None
    extensions = {e["extn_id"].native: e for e in cert["tbs_certificate"]["extensions"]}
    assert extensions["key_usage"]["critical"].native is True
    # SoftHSM2 is no QSCD (pkcs11.qscd false): QCP-n, and no QcSSCD (R19)
    policies = [p["policy_identifier"].dotted for p in cert.certificate_policies_value]
    assert policies == ["0.4.0.194112.1.0", services.config.ca.policy_oid]
    assert services.trust.qscd is False
    statements = extensions["qc_statements"]["extn_value"].parsed.native
    assert [s["statement_id"] for s in statements] == [
        "qc_compliance", "qc_type", "qc_pki_disclosure_statements", "1.3.6.1.5.5.7.11.2",
    ]  # fmt: skip
    assert statements[1]["statement_info"] == ["qct_esign"]
    assert [d["language"] for d in statements[2]["statement_info"]] == ["en", "it", "ro", "pl"]
    assert cert.crl_distribution_points[0].url == f"{server.url}/ca/issuing.crl"
    assert cert.ocsp_urls == [f"{server.url}/ca/ocsp"]

    # openssl: the chain, served by the server itself
    root = pem(await fetch(f"{server.url}/ca/root.crt"), tmp_path / "root.pem")
    issuing = pem(await fetch(f"{server.url}/ca/issuing.crt"), tmp_path / "issuing.pem")
    mine = pem(record.der, tmp_path / "customer.pem")
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(issuing), str(mine))
    assert out.strip().endswith("OK"), out

    def ocsp_status() -> str:
        return openssl(
            "ocsp", "-issuer", str(issuing), "-cert", str(mine), "-CAfile", str(root),
            "-url", f"{server.url}/ca/ocsp", "-nonce",
        )  # fmt: skip

    def crl_text() -> str:
        return openssl("crl", "-inform", "der", "-noout", "-text", data=crl)

    out = await asyncio.to_thread(ocsp_status)
    assert "Response verify OK" in out and f"{mine}: good" in out, out
    crl = await fetch(f"{server.url}/ca/issuing.crl")
    assert "No Revoked Certificates" in crl_text()

    # pyhanko-certvalidator, fetching the CRL and OCSP from the server, hard-fail
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(await fetch(f"{server.url}/ca/root.crt"))],
        other_certs=[asn1_x509.Certificate.load(await fetch(f"{server.url}/ca/issuing.crt"))],
        allow_fetching=True,
        revocation_mode="hard-fail",
    )
    validator = CertificateValidator(cert, validation_context=context)
    await validator.async_validate_usage({"non_repudiation"})

    # revoked from the command line: at once in OCSP and in the CRL
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", "cert", "revoke", record.serial,
        "--reason", "key_compromise", "--data-dir", str(services.config.data_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode == 0 and b"revoked" in output, output
    # R19: nobody signs with a revoked certificate's key again
    label = record.key_label
    assert not await asyncio.to_thread(ca.keys.exists, label)
    assert await asyncio.to_thread(ca.keys.public_key, label) is None
    out = await asyncio.to_thread(ocsp_status)
    assert f"{mine}: revoked" in out and "Reason: keyCompromise" in out, out
    crl = await fetch(f"{server.url}/ca/issuing.crl")
    text = crl_text()
    assert record.serial.upper().lstrip("0") in text.replace(":", "")
    assert "Key Compromise" in text
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(await fetch(f"{server.url}/ca/root.crt"))],
        other_certs=[asn1_x509.Certificate.load(await fetch(f"{server.url}/ca/issuing.crt"))],
        allow_fetching=True,
        revocation_mode="hard-fail",
    )
    with pytest.raises(RevokedError):
        await CertificateValidator(cert, validation_context=context).async_validate_usage(
            {"non_repudiation"}
        )

    # the command line lists and shows it, revoked
    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "videoid", "cert", *args,
            "--data-dir", str(services.config.data_path), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out
        return out.decode()

    listing = await cli("list")
    assert record.serial in listing and "revoked" in listing and "Root CA" in listing
    shown = await cli("show", record.serial)
    assert "key_compromise" in shown and "-----BEGIN CERTIFICATE-----" in shown
    # revoking twice, or something unknown, says so
    with pytest.raises(Exception) as again:
        await services.trust.revoke(record.serial, "key_compromise", "test")
    assert getattr(again.value, "code", "") == "certificate_revoked"
    entries = [e.action for e in await services.repo.audit_entries()]
    assert {"ca_created", "certificate_issued", "certificate_revoked", "key_destroyed"} <= set(
        entries
    )


async def test_timestamps_and_bad_requests(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server()
    data = tmp_path / "contract.pdf"
    data.write_bytes(b"%PDF-1.7 a contract")
    query = tmp_path / "q.tsq"
    openssl("ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/tsa",
            data=query.read_bytes(),
            headers={"Content-Type": "application/timestamp-query"},
        ) as r:
            assert r.status == 200 and r.content_type == "application/timestamp-reply"
            (tmp_path / "r.tsr").write_bytes(await r.read())
        async with http.post(
            f"{server.url}/tsa",
            data=b"junk",
            headers={"Content-Type": "application/timestamp-query"},
        ) as r:
            assert r.status == 200
            (tmp_path / "bad.tsr").write_bytes(await r.read())
        async with http.post(
            f"{server.url}/tsa", data=b"x", headers={"Content-Type": "text/plain"}
        ) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (400, "invalid_content_type")
        async with http.post(
            f"{server.url}/ca/ocsp",
            data=b"junk",
            headers={"Content-Type": "application/ocsp-request"},
        ) as r:
            raw = await r.read()
    root = pem(await fetch(f"{server.url}/ca/root.crt"), tmp_path / "root.pem")
    tsa = pem(await fetch(f"{server.url}/ca/tsa.crt"), tmp_path / "tsa.pem")
    text = openssl("ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text")
    assert "Status: Granted" in text and "Policy OID: 0.4.0.2023.1.1" in text, text
    out = openssl(
        "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "r.tsr"),
        "-CAfile", str(root), "-untrusted", str(tsa),
    )  # fmt: skip
    assert "Verification: OK" in out, out
    data.write_bytes(b"%PDF-1.7 another contract")  # the token does not fit other data
    out = openssl(
        "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "r.tsr"),
        "-CAfile", str(root), "-untrusted", str(tsa),
    )  # fmt: skip
    assert "Verification: FAILED" in out, out
    bad = openssl("ts", "-reply", "-in", str(tmp_path / "bad.tsr"), "-text")
    assert "Status: Rejected" in bad and "wrong format" in bad, bad
    from asn1crypto import ocsp

    assert ocsp.OCSPResponse.load(raw)["response_status"].native == "malformed_request"


async def test_a_failed_issuance_leaves_nothing_behind(start_server: StartServer) -> None:
    server = await start_server()
    services = server.services
    ca = await services.trust.ca()
    invitation = await server.invite()

    async def broken(record: object) -> None:
        raise OSError("the database went away")

    services.repo.add_certificate = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await services.trust.issue(invitation.session_id, FIELDS)
    # no key of this session's left in the token, whatever its attempt's label
    left = await asyncio.to_thread(ca.keys.labels, f"customer-{invitation.session_id}")
    assert left == set()
    assert await services.repo.certificates(session_id=invitation.session_id) == []


async def test_a_token_without_room_is_a_clear_error(start_server: StartServer) -> None:
    """SoftHSM has no capacity limit, so the token's "no room" (CKR_DEVICE_MEMORY) is
    raised at the token boundary here: the customer gets ``token_full``, nothing is
    issued, and the next request works."""
    import pkcs11

    server = await start_server()
    services = server.services
    ca = await services.trust.ca()
    invitation = await server.invite()
    token = ca.keys.token
    real_run = token.run

    def full(work: object) -> object:
        raise pkcs11.exceptions.DeviceMemory()

    token.run = full  # type: ignore[method-assign,assignment]
    with pytest.raises(Exception) as refused:
        await services.trust.issue(invitation.session_id, FIELDS)
    assert getattr(refused.value, "code", "") == "token_full"
    token.run = real_run  # type: ignore[method-assign]
    assert await services.repo.certificates(session_id=invitation.session_id) == []
    record = await services.trust.issue(invitation.session_id, FIELDS)
    assert record.status == "good"
