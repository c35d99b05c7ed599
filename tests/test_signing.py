"""The contract signed with the customer's key in a real SoftHSM2 token, as PAdES with
a timestamp and embedded revocation data, accepted by three independent validators:
``pyhanko sign validate`` (trusting only the local root, revocation checked against the
server's own CRL and OCSP), poppler's ``pdfsig`` (its text read: its exit code is 0 even
when it complains) and ``openssl cms -verify`` on the extracted signature. The same
contract altered after signing fails all three (R16, R18)."""

from __future__ import annotations

import asyncio
import datetime
import io
import re
import subprocess
import sys
from pathlib import Path

from asn1crypto import crl, ocsp, x509
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import CertificateValidator, ValidationContext

from videoid.trust.contract import ContractData, contract_pdf
from videoid.trust.signing import sign_pdf

from .conftest import Server, StartServer
from .test_ca import FIELDS, customer, fetch, openssl, pem

PYHANKO = [sys.executable, "-m", "pyhanko"]


def run(*command: str) -> tuple[int, str]:
    done = subprocess.run(command, capture_output=True, timeout=120)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def signed_content(pdf: bytes) -> tuple[bytes, bytes]:
    """The signature's CMS (from /Contents) and the bytes it covers (its /ByteRange)."""
    ranges = re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    a, b, c, d = (int(x) for x in ranges[-1])
    covered = pdf[a : a + b] + pdf[c : c + d]
    contents = pdf[a + b : c].strip(b"<>")
    cms = bytes.fromhex(contents.decode())
    return cms.rstrip(b"\x00"), covered


def pem_der(path: Path) -> bytes:
    return bytes(asn1_pem.unarmor(path.read_bytes())[2])


def cms_verify(pdf: bytes, tmp_path: Path, root: Path, issuing: Path) -> str:
    """``openssl cms -verify`` on the last signature's CMS and the bytes it covers."""
    cms, covered = signed_content(pdf)
    (tmp_path / "sig.der").write_bytes(cms)
    (tmp_path / "covered.bin").write_bytes(covered)
    return openssl(
        "cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
        "-content", str(tmp_path / "covered.bin"), "-binary", "-CAfile", str(root),
        "-certfile", str(issuing), "-purpose", "any", "-out", "/dev/null",
    )  # fmt: skip


async def signed_contract(server: Server, tmp_path: Path) -> tuple[Path, Path, Path]:
    services = server.services
    session_id, record = await customer(server)
    ca = await services.trust.ca()
    data = ContractData(
        provider="videoid test provider",
        session_id=session_id,
        surname=FIELDS["surname"],
        given_names=FIELDS["given_names"],
        date_of_birth=FIELDS["date_of_birth"],
        nationality=FIELDS["nationality"],
        document=f"ID card {FIELDS['document_number']}",
        email="ada@example.org",
        phone="+393471234567",
        certificate_serial=record.serial,
        date=datetime.date(2026, 11, 26),
    )
    unsigned, pages = contract_pdf(data)
    assert any("CONDITIONS OF SERVICE" in line for page in pages for line in page)
    assert unsigned.startswith(b"%PDF-1.7")
    signed = await sign_pdf(
        unsigned,
        ca.keys,
        record.key_label,
        x509.Certificate.load(record.der),
        ca.issuing,
        ca.root,
        f"{server.url}/tsa",
        name="ADA AUGUSTA LOVELACE",
        reason="Contract for a qualified certificate",
    )
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    root = pem(await fetch(f"{server.url}/ca/root.crt"), tmp_path / "root.pem")
    issuing = pem(await fetch(f"{server.url}/ca/issuing.crt"), tmp_path / "issuing.pem")
    return path, root, issuing


async def test_independent_validators_accept_the_signed_contract(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    path, root, issuing = await signed_contract(server, tmp_path)
    pdf = path.read_bytes()
    assert b"/DSS" in pdf and b"/OCSPs" in pdf  # the revocation data is in the file

    # long-term validation: the chain validates from what the file holds alone
    # (its DSS: certificates, OCSP responses, CRLs), nothing fetched
    reader = PdfFileReader(io.BytesIO(pdf))
    dss = DocumentSecurityStore.read_dss(reader)
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(pem_der(root))],
        other_certs=list(dss.load_certs()),
        ocsps=[ocsp.OCSPResponse.load(o.get_object().data) for o in dss.ocsps],
        crls=[crl.CertificateList.load(c.get_object().data) for c in dss.crls],
        allow_fetching=False,
        revocation_mode="hard-fail",
    )
    signer = reader.embedded_signatures[0].signer_cert
    await CertificateValidator(signer, validation_context=context).async_validate_usage(
        {"non_repudiation"}
    )

    # pyHanko, trusting only the local root; revocation fetched from the server
    code, out = await asyncio.to_thread(
        run, *PYHANKO, "sign", "validate", "--trust", str(root), "--trust-replace",
        "--force-revinfo", "--pretty-print", str(path),
    )  # fmt: skip
    assert code == 0, out
    assert "The signature is judged VALID" in out or "judged VALID" in out, out
    assert "timestamp" in out.lower(), out

    # poppler: read what it says
    code, out = await asyncio.to_thread(run, "pdfsig", str(path))
    assert "Signature Validation: Signature is Valid." in out, out
    assert "ADA AUGUSTA LOVELACE" in out, out

    # openssl on the extracted CMS and the bytes it covers
    out = cms_verify(pdf, tmp_path, root, issuing)
    assert "Verification successful" in out, out

    # the contract altered after signing: a byte inside the signed range
    text_at = pdf.index(b"CONDITIONS OF SERVICE")
    altered = bytearray(pdf)
    altered[text_at] = ord("K")
    bad = tmp_path / "altered.pdf"
    bad.write_bytes(bytes(altered))
    code, out = await asyncio.to_thread(
        run, *PYHANKO, "sign", "validate", "--trust", str(root), "--trust-replace",
        "--pretty-print", str(bad),
    )  # fmt: skip
    assert code != 0 and "judged VALID" not in out.replace("judged INVALID", ""), out
    code, out = await asyncio.to_thread(run, "pdfsig", str(bad))
    assert "Signature is Valid" not in out and "Digest Mismatch" in out, out
    out = cms_verify(bytes(altered), tmp_path, root, issuing)
    assert "Verification successful" not in out and "failure" in out.lower(), out
