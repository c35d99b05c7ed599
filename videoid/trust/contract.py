"""The contract: a PDF/A-2b made for one customer from a template (the provider, the
customer's verified data, the service's conditions, the date) in the customer's
language (:mod:`.contract_texts`), page after page of plain text.

Written by hand (PDF 1.7, one content stream per page) with what PDF/A-2b asks for a
document to be readable unchanged in decades: its font embedded (a subset of DejaVu
Sans, Debian's ``fonts-dejavu-core``, as a CID-keyed TrueType font with widths and a
ToUnicode map, so that the text can be extracted and searched), XMP metadata declaring
PDF/A-2 conformance B, matching the document information dictionary, and an sRGB output
intent with its ICC profile (made by LittleCMS through Pillow); a document ID. pyHanko's
incremental updates (signature, DSS, document timestamps) keep all of it.
"""

from __future__ import annotations

import datetime
import hashlib
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

from .contract_texts import ContractText, text_for

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 64
FONT_SIZE = 9.5
LEADING = 14
LINE_WIDTH = PAGE_WIDTH - 2 * MARGIN
LINES_PER_PAGE = int((PAGE_HEIGHT - 2 * MARGIN) / LEADING)
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
"""Debian's fonts-dejavu-core (scripts/setup installs it)."""


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
    words = text_for(data.language)
    values = (
        data.given_names,
        data.surname,
        data.date_of_birth,
        data.nationality,
        data.document,
        data.email,
        data.phone,
        data.certificate_serial,
        data.session_id,
    )
    lines = [
        words.title,
        "",
        words.between.format(provider=data.provider),
        "",
        *(f"    {label}: {value}" for label, value in zip(words.labels, values, strict=True)),
        "",
        words.conditions,
        "",
    ]
    for paragraph in (words.object_qscd if data.qscd else words.object_no_qscd, *words.clauses):
        lines.extend(wrap(paragraph, FONT_SIZE, LINE_WIDTH))
        lines.append("")
    lines += [
        f"{words.date}: {data.date.isoformat()}",
        "",
        words.signed_qscd if data.qscd else words.signed_no_qscd,
    ]
    return lines


@dataclass(frozen=True)
class _Font:
    program: bytes
    """The whole TrueType font (subset per document when embedded)."""
    glyphs: dict[int, int]
    """Code point -> glyph id."""
    advances: dict[int, int]
    """Glyph id -> advance width in font units."""
    units_per_em: int
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int


@cache
def _font() -> _Font:
    program = FONT_FILE.read_bytes()
    font = TTFont(io.BytesIO(program))
    order = font.getGlyphOrder()
    ids = {name: i for i, name in enumerate(order)}
    glyphs = {code: ids[name] for code, name in font.getBestCmap().items()}
    head = font["head"]
    return _Font(
        program=program,
        glyphs=glyphs,
        advances={ids[name]: metric[0] for name, metric in font["hmtx"].metrics.items()},
        units_per_em=head.unitsPerEm,
        bbox=(head.xMin, head.yMin, head.xMax, head.yMax),
        ascent=font["hhea"].ascent,
        descent=font["hhea"].descent,
        cap_height=getattr(font["OS/2"], "sCapHeight", head.yMax),
    )


def _width(text: str, size: float) -> float:
    font = _font()
    units = sum(font.advances.get(font.glyphs.get(ord(c), 0), 0) for c in text)
    return units * size / font.units_per_em


def wrap(paragraph: str, size: float, width: float) -> list[str]:
    """``paragraph`` in lines no wider than ``width`` points at ``size``, measured with
    the embedded font's own advances."""
    lines: list[str] = []
    current = ""
    for word in paragraph.split():
        candidate = f"{current} {word}" if current else word
        if current and _width(candidate, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def paginate(lines: list[str]) -> list[list[str]]:
    """The lines of each page, as the PDF lays them out."""
    return [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]


def _shown(text: str, used: set[int]) -> bytes:
    """``text`` as glyph ids (Identity-H: two bytes each), noting the glyphs used."""
    font = _font()
    ids = [font.glyphs.get(ord(c), 0) for c in text]
    used.update(ids)
    return b"<" + "".join(f"{g:04X}" for g in ids).encode() + b">"


def _text_string(text: str) -> bytes:
    """A PDF text string: UTF-16BE with its byte order mark, in hex (any language)."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def _subset(used: set[int]) -> tuple[bytes, str]:
    """The font program cut to ``used`` glyphs (ids kept, so CIDs equal glyph ids),
    and the subset's six-letter tag."""
    font = TTFont(io.BytesIO(_font().program))
    options = subset.Options()
    options.retain_gids = True
    options.notdef_outline = True
    options.hinting = False
    options.layout_features = []
    options.name_IDs = ["*"]
    options.drop_tables = [*options.drop_tables, "FFTM"]  # FontForge's timestamps only
    subsetter = subset.Subsetter(options)
    order = font.getGlyphOrder()
    subsetter.populate(glyphs=[order[g] for g in sorted(used | {0})])
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    digest = hashlib.sha256(",".join(map(str, sorted(used))).encode()).digest()
    tag = "".join(chr(ord("A") + b % 26) for b in digest[:6])
    return out.getvalue(), tag


@cache
def _srgb_profile() -> bytes:
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    # LittleCMS writes ICC 4.4; PDF 1.7 (hence PDF/A-2) knows ICC up to 4.2, whose tags
    # this profile's are. The profile ID covers the version, so it is cleared (all
    # zeros: "not computed", as ICC.1 allows).
    profile[8:12] = bytes((4, 0x20, 0, 0))
    profile[84:100] = bytes(16)
    return bytes(profile)


def _xmp(title: str, language: str, created: str) -> bytes:
    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about=""
 xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:xmp="http://ns.adobe.com/xap/1.0/"
 xmlns:pdf="http://ns.adobe.com/pdf/1.3/">
<pdfaid:part>2</pdfaid:part>
<pdfaid:conformance>B</pdfaid:conformance>
<dc:format>application/pdf</dc:format>
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{esc(title)}</rdf:li></rdf:Alt></dc:title>
<dc:language><rdf:Bag><rdf:li>{esc(language)}</rdf:li></rdf:Bag></dc:language>
<pdf:Producer>videoid</pdf:Producer>
<xmp:CreatorTool>videoid</xmp:CreatorTool>
<xmp:CreateDate>{created}</xmp:CreateDate>
<xmp:ModifyDate>{created}</xmp:ModifyDate>
<xmp:MetadataDate>{created}</xmp:MetadataDate>
</rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


def render(
    lines: list[str],
    title: str,
    words: ContractText,
    language: str = "en",
    created: datetime.datetime | None = None,
) -> bytes:
    """A PDF/A-2b of ``lines``, as many pages as they fill, each with its page number."""
    created = created or datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    created = created.astimezone(datetime.UTC).replace(microsecond=0)
    pages = paginate(lines)
    used: set[int] = set()
    objects: list[bytes] = []  # object n is objects[n - 1]; 1-7 fixed, then the pages

    def ref(n: int) -> str:
        return f"{n} 0 R"

    CATALOG, PAGES, FONT, CIDFONT, DESCRIPTOR, FONTFILE, TOUNICODE = range(1, 8)
    META, ICC, INFO = 8, 9, 10
    first_page = 11
    contents: list[bytes] = []
    for number, page in enumerate(pages, 1):
        shown = [f"BT /F1 {FONT_SIZE} Tf {LEADING} TL {MARGIN} {PAGE_HEIGHT - MARGIN} Td".encode()]
        for line in page:
            shown.append(_shown(line, used) + b" Tj T*")
        footer = words.page.format(title=title, number=number, total=len(pages))
        shown.append(f"ET BT /F1 8 Tf {MARGIN} 32 Td ".encode() + _shown(footer, used) + b" Tj ET")
        contents.append(b"\n".join(shown))
    program, tag = _subset(used)
    font = _font()
    scale = 1000 / font.units_per_em
    glyph_ids = sorted(used | {0})
    widths = " ".join(f"{g} [{round(font.advances.get(g, 0) * scale)}]" for g in glyph_ids)
    to_unicode: dict[int, int] = {}
    for code, glyph in font.glyphs.items():
        if glyph in used and glyph not in to_unicode:
            to_unicode[glyph] = code
    cmap = "\n".join(
        f"<{g:04X}> <{chr(c).encode('utf-16-be').hex().upper()}>"
        for g, c in sorted(to_unicode.items())
    )
    cmap_stream = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(to_unicode)} beginbfchar\n{cmap}\nendbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    ).encode()
    name = f"{tag}+DejaVuSans"
    x0, y0, x1, y1 = (round(v * scale) for v in font.bbox)
    icc = _srgb_profile()
    xmp = _xmp(title, language, created.strftime("%Y-%m-%dT%H:%M:%SZ"))
    pdf_date = created.strftime("D:%Y%m%d%H%M%SZ")

    def stream(extra: str, data: bytes) -> bytes:
        return f"<< {extra} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"

    kids = " ".join(ref(first_page + 2 * i) for i in range(len(pages)))
    objects.append(
        f"<< /Type /Catalog /Pages {ref(PAGES)} /Metadata {ref(META)} /Lang ".encode()
        + _text_string(language)
        + f" /OutputIntents [<< /Type /OutputIntent /S /GTS_PDFA1 "
        f"/OutputConditionIdentifier (sRGB IEC61966-2.1) /Info (sRGB IEC61966-2.1) "
        f"/DestOutputProfile {ref(ICC)} >>] >>".encode()
    )
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(
        f"<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H "
        f"/DescendantFonts [{ref(CIDFONT)}] /ToUnicode {ref(TOUNICODE)} >>".encode()
    )
    objects.append(
        f"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} "
        f"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
        f"/FontDescriptor {ref(DESCRIPTOR)} /CIDToGIDMap /Identity "
        f"/DW {round(font.advances.get(0, 0) * scale)} /W [{widths}] >>".encode()
    )
    objects.append(
        f"<< /Type /FontDescriptor /FontName /{name} /Flags 32 /FontBBox [{x0} {y0} {x1} {y1}] "
        f"/ItalicAngle 0 /Ascent {round(font.ascent * scale)} "
        f"/Descent {round(font.descent * scale)} /CapHeight {round(font.cap_height * scale)} "
        f"/StemV 80 /FontFile2 {ref(FONTFILE)} >>".encode()
    )
    objects.append(stream(f"/Length1 {len(program)}", program))
    objects.append(stream("", cmap_stream))
    objects.append(stream("/Type /Metadata /Subtype /XML", xmp))
    objects.append(stream("/N 3", icc))
    objects.append(
        b"<< /Title "
        + _text_string(title)
        + f" /Producer (videoid) /Creator (videoid) /CreationDate ({pdf_date}) "
        f"/ModDate ({pdf_date}) >>".encode()
    )
    for number, content in enumerate(contents):
        objects.append(
            f"<< /Type /Page /Parent {ref(PAGES)} /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            f"/Resources << /Font << /F1 {ref(FONT)} >> >> "
            f"/Contents {ref(first_page + 2 * number + 1)} >>".encode()
        )
        objects.append(stream("", content))
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    # PDF/A wants a document ID; made from the content, so the same contract has the same
    document_id = hashlib.md5(bytes(out), usedforsecurity=False).hexdigest().upper()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {ref(CATALOG)} /Info {ref(INFO)} "
        f"/ID [<{document_id}> <{document_id}>] >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def contract_pdf(
    data: ContractData, created: datetime.datetime | None = None
) -> tuple[bytes, list[list[str]]]:
    """The contract's PDF/A-2b, and its pages' text (for the page that shows it).
    ``created`` (the document's creation time) defaults to the contract's date."""
    words = text_for(data.language)
    lines = contract_lines(data)
    when = created or datetime.datetime.combine(data.date, datetime.time(), datetime.UTC)
    title = words.document_title.format(session=data.session_id)
    return render(lines, title, words, data.language, when), paginate(lines)
