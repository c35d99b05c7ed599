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
from typing import Any

import pytest
from asn1crypto import crl, ocsp, x509
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager

from videoid.trust.contract import ContractData, contract_pdf
from videoid.trust.signing import (
    ARCHIVE_FIELD_PREFIX,
    SignatureFailed,
    SigningAuthority,
    archive_state,
    extend_pdf,
    sign_pdf,
)
from videoid.trust.signing_flow import signing_authority

from .conftest import Server, StartServer
from .test_ca import FIELDS, customer, fetch, openssl, pem

PYHANKO = [sys.executable, "-m", "pyhanko"]


def run(*command: str) -> tuple[int, str]:
    done = subprocess.run(command, capture_output=True, timeout=120)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def signed_content(pdf: bytes) -> tuple[bytes, bytes]:
    """The customer's signature's CMS (from /Contents) and the bytes it covers (its
    /ByteRange): the first in the file, the document timestamps come after it."""
    ranges = re.findall(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    a, b, c, d = (int(x) for x in min(ranges, key=lambda r: int(r[2])))
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


async def authority(server: Server) -> SigningAuthority:
    return await signing_authority(server.services.trust, server.services.config)


def contract_data(session_id: str, serial: str, language: str = "en") -> ContractData:
    return ContractData(
        provider="videoid test provider",
        session_id=session_id,
        surname=FIELDS["surname"],
        given_names=FIELDS["given_names"],
        date_of_birth=FIELDS["date_of_birth"],
        nationality=FIELDS["nationality"],
        document=f"ID card {FIELDS['document_number']}",
        email="ada@example.org",
        phone="+393471234567",
        certificate_serial=serial,
        date=datetime.date(2026, 11, 26),
        language=language,
    )


async def signed_contract(server: Server, tmp_path: Path) -> tuple[Path, Path, Path]:
    services = server.services
    session_id, record = await customer(server)
    unsigned, pages = contract_pdf(contract_data(session_id, record.serial))
    assert any("CONDITIONS OF SERVICE" in line for page in pages for line in page)
    assert unsigned.startswith(b"%PDF-1.7")
    ca = await services.trust.ca()
    signed = await sign_pdf(
        unsigned,
        ca.keys,
        record.key_label,
        x509.Certificate.load(record.der),
        await authority(server),
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
    text_at = pdf.index(b"<pdfaid:part>2")  # in the signed range: the XMP metadata
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


def adesverify(path: Path, root: Path, at: datetime.datetime) -> tuple[int, str]:
    """pyHanko's AdES validator (ETSI EN 319 102-1), trusting only our root, at ``at``."""
    return run(
        *PYHANKO, "sign", "adesverify", "--trust", str(root), "--trust-replace",
        "--pretty-print", "--validation-time", at.isoformat(), str(path),
    )  # fmt: skip


async def lta_result(pdf: bytes, root: Path, at: datetime.datetime) -> Any:
    """pyHanko's B-LTA validation through its API with fetching switched off: only what
    the file holds."""
    spec = SignatureValidationSpec(
        cert_validation_policy=CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build([asn1_x509.Certificate.load(pem_der(root))]),
            revinfo_policy=CertRevTrustPolicy(
                REQUIRE_REVINFO,
                freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
            ),
        ),
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
        ),
    )
    reader = PdfFileReader(io.BytesIO(pdf))
    return await ades_lta_validation(
        reader.embedded_regular_signatures[0],
        PdfSignatureValidationSpec(spec),
        timing_info=ValidationTimingInfo(at, at, point_in_time_validation=True),
    )


def signing_time(pdf: bytes) -> datetime.datetime:
    reader = PdfFileReader(io.BytesIO(pdf))
    [token] = extract_tst_data_iter(reader.embedded_regular_signatures[0].signer_info, signed=False)
    return token["encap_content_info"]["content"].parsed["gen_time"].native  # type: ignore[no-any-return]


async def assert_valid_offline(path: Path, root: Path, days: tuple[float, ...]) -> None:
    pdf = path.read_bytes()
    signed_at = signing_time(pdf)
    for day in days:
        at = signed_at + datetime.timedelta(days=day, seconds=5)
        code, out = await asyncio.to_thread(adesverify, path, root, at)
        assert code == 0 and "The signature is judged VALID." in out, (day, out)
        result = await lta_result(pdf, root, at)
        assert result.ades_subindic == AdESPassed.OK, (day, result.failure_msg)
        # the LTA level: a document timestamp after the signature, validated, is the
        # proof of existence of the validation data the past validation used
        assert result.oldest_evidence_record_timestamp is not None, day


async def test_b_lta_validates_offline_at_signing_in_a_day_and_in_six_months(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    path, root, _issuing = await signed_contract(server, tmp_path)
    await server.stop()  # nothing answers the certificates' addresses any more: offline
    pdf = path.read_bytes()
    reader = PdfFileReader(io.BytesIO(pdf))
    [signature] = reader.embedded_regular_signatures
    [archive] = reader.embedded_timestamp_signatures
    assert archive.field_name.startswith(ARCHIVE_FIELD_PREFIX)
    # the signer's certificate once in the CMS, the chain beside it
    held = [c.chosen for c in signature.signed_data["certificates"]]
    assert [c.sha256 for c in held].count(signature.signer_cert.sha256) == 1, len(held)
    # revocation data issued after the signature timestamp is in the DSS
    dss = DocumentSecurityStore.read_dss(reader)
    produced = [
        ocsp.OCSPResponse.load(o.get_object().data)
        .basic_ocsp_response["tbs_response_data"]["produced_at"]
        .native
        for o in dss.ocsps
    ]
    assert max(produced) > signing_time(pdf), produced
    await assert_valid_offline(path, root, (0, 1, 183))


async def test_a_text_change_after_signing_is_caught(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    path, root, _ = await signed_contract(server, tmp_path)
    await server.stop()
    pdf = path.read_bytes()
    # an incremental update (which keeps every signed byte) giving the first page new
    # content: its text and one more line drawn in the contract's own font
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    text = page["/Contents"].get_object().data
    changed = generic.StreamObject(stream_data=text + b"\nBT /F1 10 Tf 64 40 Td <00240025> Tj ET")
    page["/Contents"] = writer.add_object(changed)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(out.getvalue())
    reader = PdfFileReader(io.BytesIO(out.getvalue()))
    status = await async_validate_pdf_signature(
        reader.embedded_regular_signatures[0],
        ValidationContext(
            trust_roots=[asn1_x509.Certificate.load(pem_der(root))], allow_fetching=False
        ),
    )
    assert status.intact and status.valid  # the signed bytes themselves are untouched
    assert status.modification_level == ModificationLevel.OTHER, status.modification_level
    assert not status.docmdp_ok and not status.bottom_line
    code, out_text = await asyncio.to_thread(
        adesverify, bad, root, signing_time(pdf) + datetime.timedelta(days=1)
    )
    assert code != 0 and "judged VALID" not in out_text.replace("judged INVALID", ""), out_text


async def test_a_server_restarted_on_another_port_signs_and_it_validates(
    start_server: StartServer, tmp_path: Path
) -> None:
    first = await start_server()
    session_id, record = await customer(first)  # the certificate names the first port
    data_dir = first.services.config.data_path
    await first.stop()
    second = await start_server(server={"data_dir": str(data_dir)})
    assert second.url != first.url
    ca = await second.services.trust.ca()
    unsigned, _ = contract_pdf(contract_data(session_id, record.serial))
    signed = await sign_pdf(
        unsigned, ca.keys, record.key_label, x509.Certificate.load(record.der),
        await authority(second), name="ADA AUGUSTA LOVELACE", reason="contract",
    )  # fmt: skip
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    root = pem(await fetch(f"{second.url}/ca/root.crt"), tmp_path / "root.pem")
    await second.stop()
    await assert_valid_offline(path, root, (0, 1))


async def test_an_archive_timestamp_extends_it(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server()
    path, root, _ = await signed_contract(server, tmp_path)
    pdf = path.read_bytes()
    state = archive_state(pdf)
    assert state.document_timestamps == 1 and state.digest_algorithm == "sha256"
    now = state.newest_at
    ca = await server.services.trust.ca()
    assert ca.tsa is not None and state.tsa_not_after == ca.tsa.not_valid_after
    assert not state.due(now, margin_days=365)
    days_left = (state.tsa_not_after - now).days
    assert state.due(now, margin_days=days_left + 1)
    extended = await extend_pdf(pdf, await authority(server))
    assert extended.startswith(pdf)  # an incremental update: what was signed stays
    after = archive_state(extended)
    assert after.document_timestamps == 2 and after.newest_at > state.newest_at
    path.write_bytes(extended)
    await server.stop()
    await assert_valid_offline(path, root, (0, 183))
    with pytest.raises(SignatureFailed) as raised:
        archive_state(b"%PDF-1.7 not signed")
    assert raised.value.code == "archive_unreadable"
