"""The contract: a PDF made for one customer from a template (the provider, the
customer's verified data, the service's conditions, the date), page after page of
plain text in Helvetica, small and valid (a hand-written PDF 1.7: one object per page,
its content stream, the font, the cross-reference table)."""

from __future__ import annotations

import datetime
import textwrap
from dataclasses import dataclass

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 64
FONT_SIZE = 10.5
LEADING = 15
CHARS_PER_LINE = 92
LINES_PER_PAGE = int((PAGE_HEIGHT - 2 * MARGIN) / LEADING)

CONDITIONS = (
    "1. Object. The Provider issues to the Customer a qualified certificate for electronic "
    "signatures (Regulation (EU) No 910/2014, eIDAS), whose private key the Provider keeps "
    "on the Customer's behalf in a qualified signature creation device, and which only the "
    "Customer can use, with their signature PIN and a one-time code sent to their mobile "
    "phone for each signature.",
    "2. Identification. The Customer was identified by a live video call with an operator of "
    "the Provider, recorded and kept as evidence, on the date below. The Customer declares "
    "that the data in this contract are true and that the identity document shown is theirs.",
    "3. Signature PIN and codes. The Customer keeps the signature PIN secret, never writes it "
    "down near their phone, and never tells anyone the one-time codes, which the Provider "
    "will never ask for. Three wrong PINs lock the key; the PUK given at issuance unblocks "
    "it.",
    "4. Validity and revocation. The certificate is valid for three years unless revoked. "
    "The Customer asks for revocation at once if they suspect that anyone else knows their "
    "PIN or has their phone. A revoked certificate cannot be used again.",
    "5. Personal data. The Provider processes the Customer's personal data to identify "
    "them, to issue and manage the certificate, and to keep the evidence for the period the "
    "law requires (twenty years for qualified certificates, Italian CAD). The Customer has "
    "the rights of Articles 15 to 22 GDPR, within those obligations.",
    "6. Evidence. The Customer agrees that the recording of the identification, the "
    "checks made, the one-time code events (never the codes) and this signed contract are "
    "kept as evidence of the identification and of this agreement.",
    "7. Law and jurisdiction. This contract is governed by Italian law. The consumer's court "
    "has jurisdiction over any dispute.",
)


@dataclass(frozen=True)
class ContractData:
    provider: str
    session_id: str
    surname: str
    given_names: str
    date_of_birth: str
    nationality: str
    document: str
    email: str
    phone: str
    certificate_serial: str
    date: datetime.date
    language: str = "en"
    qscd: bool = False


def contract_lines(data: ContractData) -> list[str]:
    rows = [
        ("Given names", data.given_names),
        ("Surname", data.surname),
        ("Date of birth", data.date_of_birth),
        ("Nationality", data.nationality),
        ("Identity document", data.document),
        ("E-mail", data.email),
        ("Mobile phone", data.phone),
        ("Certificate serial", data.certificate_serial),
        ("Identification", data.session_id),
    ]
    lines = [
        "CONTRACT FOR A QUALIFIED ELECTRONIC SIGNATURE CERTIFICATE",
        "",
        f"Between {data.provider} (the Provider) and the Customer:",
        "",
        *(f"    {label + ':':<22}{value}" for label, value in rows),
        "",
        "CONDITIONS OF SERVICE",
        "",
    ]
    for paragraph in CONDITIONS:
        lines.extend(textwrap.wrap(paragraph, CHARS_PER_LINE))
        lines.append("")
    lines += [
        f"Date: {data.date.isoformat()}",
        "",
        "Signed by the Customer with their qualified electronic signature.",
    ]
    return lines


def _escape(text: str) -> bytes:
    encoded = text.encode("cp1252", errors="replace")
    return encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def paginate(lines: list[str]) -> list[list[str]]:
    """The lines of each page, as the PDF lays them out."""
    return [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]


def render(lines: list[str], title: str) -> bytes:
    """A PDF of ``lines``, as many pages as they fill, each with its page number."""
    pages = paginate(lines)
    objects: list[bytes] = []  # object n is objects[n - 1]
    font = 3
    first_page = 4
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for number, page in enumerate(pages, 1):
        stream = [f"BT /F1 {FONT_SIZE} Tf {LEADING} TL {MARGIN} {PAGE_HEIGHT - MARGIN} Td".encode()]
        for line in page:
            stream.append(b"(" + _escape(line) + b") Tj T*")
        stream.append(
            f"ET BT /F1 8 Tf {MARGIN} 32 Td".encode()
            + b"("
            + _escape(f"{title} - page {number} of {len(pages)}")
            + b") Tj ET"
        )
        content = b"\n".join(stream)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> "
            f"/Contents {first_page + 2 * (number - 1) + 1} 0 R >>".encode()
        )
        objects.append(
            f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
        )
    info = len(objects) + 1
    objects.append(b"<< /Title (" + _escape(title) + b") /Producer (videoid) >>")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def contract_pdf(data: ContractData) -> tuple[bytes, list[list[str]]]:
    """The contract's PDF, and its pages' text (for the page that shows it)."""
    lines = contract_lines(data)
    return render(lines, f"Contract {data.session_id}"), paginate(lines)
