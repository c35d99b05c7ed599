"""Document photos: validation of what arrives, quality checks (R2) and reading the
zone from phone photos of generated documents (R3)."""

from __future__ import annotations

import datetime
import io
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from videoid.bench.documents import make_document, phone_photo, png_bytes, portrait_from, render
from videoid.documents.analysis import analyse_document
from videoid.documents.images import ImageRejected, load_image
from videoid.documents.mrz import MrzError
from videoid.documents.reader import read_mrz

from .conftest import PHOTOS

TODAY = "2026-11-23"
LIMITS = {"max_bytes": 15_000_000, "max_pixels": 40_000_000}


def _jpeg(rgb: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **save)
    return buf.getvalue()


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return portrait_from(PHOTOS / "obama.jpg")


def _gray(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


# -- what arrives -------------------------------------------------------------------------


def test_a_pdf_renamed_jpg_is_refused_by_its_content() -> None:
    pdf = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + b"x" * 2000
    with pytest.raises(ImageRejected) as err:
        load_image(pdf, **LIMITS)
    assert err.value.code == "unsupported_file_type"


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a" + b"\0" * 100, b"<svg xmlns='http://www.w3.org/2000/svg'/>"]
)
def test_other_types_and_empty_files_are_refused(data: bytes) -> None:
    with pytest.raises(ImageRejected) as err:
        load_image(data, **LIMITS)
    assert err.value.code in ("file_empty", "unsupported_file_type")


def test_a_truncated_jpeg_is_refused() -> None:
    import face_recognition  # noqa: F401  (it tells Pillow to accept truncated files)

    data = _jpeg(np.full((800, 800, 3), 120, np.uint8))
    with pytest.raises(ImageRejected) as err:
        load_image(data[: len(data) // 2], **LIMITS)
    assert err.value.code == "image_unreadable"


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    # a valid PNG header declaring 60000 x 60000 pixels, with almost no data
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageRejected) as err:
        load_image(png, **LIMITS)
    assert err.value.code == "image_too_large"


def test_too_many_bytes_and_too_few_pixels_are_refused() -> None:
    with pytest.raises(ImageRejected) as err:
        load_image(b"\xff\xd8\xff" + b"\0" * 2000, max_bytes=1000, max_pixels=10**6)
    assert err.value.code == "file_too_large"
    with pytest.raises(ImageRejected) as err:
        load_image(_jpeg(np.full((100, 100, 3), 120, np.uint8)), **LIMITS)
    assert err.value.code == "image_too_small"


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    rgb = np.zeros((400, 700, 3), np.uint8)
    rgb[:, :350] = 255  # white on the left
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # make
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), comment=b"serial 1234")
    clean = load_image(buf.getvalue(), **LIMITS)
    assert (clean.width, clean.height) == (400, 700)
    assert clean.rgb[:350].mean() > 200 and clean.rgb[350:].mean() < 50  # white now on top
    stored = Image.open(io.BytesIO(clean.jpeg))
    assert not stored.getexif() and "comment" not in stored.info
    assert b"SecretCam" not in clean.jpeg and b"serial 1234" not in clean.jpeg


# -- reading the zone ---------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "seed"), [("TD1", 11), ("TD1", 12), ("TD3", 13), ("TD3", 14)])
def test_the_zone_is_read_from_phone_photos(fmt: str, seed: int, portrait: Image.Image) -> None:
    rng = random.Random(seed)
    doc = make_document(rng, fmt)  # type: ignore[arg-type]
    side, _ = render(doc, portrait, rng)
    reading = read_mrz(_gray(phone_photo(side, rng)), datetime.date(2026, 11, 23))
    assert reading.data.lines == doc.lines
    assert reading.data.checks_ok


@pytest.mark.parametrize(("fmt", "seed"), [("TD1", 12), ("TD3", 15)])
def test_a_scan_the_document_fills_edge_to_edge_is_read(
    fmt: str, seed: int, portrait: Image.Image
) -> None:
    rng = random.Random(seed)
    doc = make_document(rng, fmt)  # type: ignore[arg-type]
    side, _ = render(doc, portrait, rng)  # no background, no degradation: a scan
    reading = read_mrz(_gray(png_bytes(side)), datetime.date(2026, 11, 23))
    assert reading.data.lines == doc.lines


def test_an_upside_down_photo_is_read(portrait: Image.Image) -> None:
    rng = random.Random(21)
    doc = make_document(rng, "TD3")
    side, _ = render(doc, portrait, rng)
    photo = _gray(phone_photo(side, rng))
    assert read_mrz(cv2.rotate(photo, cv2.ROTATE_180)).data.lines == doc.lines


def test_a_wrong_check_digit_on_the_document_is_reported_not_corrected(
    portrait: Image.Image,
) -> None:
    rng = random.Random(31)
    doc = make_document(rng, "TD3")
    l2 = doc.lines[1]
    forged = l2[:19] + str((int(l2[19]) + 3) % 10) + l2[20:]  # birth date check digit
    doc = type(doc)(**{**doc.__dict__, "lines": (doc.lines[0], forged)})
    side, _ = render(doc, portrait, rng)
    data = read_mrz(_gray(png_bytes(side))).data
    assert data.lines[1] == forged
    assert {c.name for c in data.checks if not c.ok} == {"date_of_birth", "composite"}


def test_no_zone_in_a_photo_without_one() -> None:
    face = (PHOTOS / "obama.jpg").read_bytes()
    with pytest.raises(MrzError):
        read_mrz(_gray(face))


# -- the whole check, as the server runs it -------------------------------------------------


def test_a_good_photo_passes_with_zone_and_portrait(portrait: Image.Image) -> None:
    rng = random.Random(41)
    doc = make_document(rng, "TD3")
    side, _ = render(doc, portrait, rng)
    result = analyse_document(
        phone_photo(side, rng), want_mrz=True, want_portrait=True, today=TODAY, **LIMITS
    )
    assert result["problems"] == []
    assert result["mrz"]["checks_ok"] and result["mrz"]["document_number"] == doc.document_number
    assert result["portrait"][:3] == b"\xff\xd8\xff"


def test_quality_problems_say_what_to_fix(portrait: Image.Image) -> None:
    rng = random.Random(51)
    doc = make_document(rng, "TD1")
    side, front = render(doc, portrait, rng)
    photo = _gray(phone_photo(side, rng))

    def zone_problems(gray: np.ndarray) -> list[str]:
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB) if gray.ndim == 2 else gray
        result = analyse_document(
            _jpeg(rgb), want_mrz=True, want_portrait=False, today=TODAY, **LIMITS
        )
        problems: list[str] = result["problems"]
        return problems

    assert "too_blurry" in zone_problems(cv2.GaussianBlur(photo, (0, 0), 6))
    # a reflection: a burnt-out patch over the card
    glare = cv2.cvtColor(photo, cv2.COLOR_GRAY2RGB)
    h, w = photo.shape
    cv2.circle(glare, (w // 2, h // 2), h // 6, (255, 255, 255), -1)
    assert "glare" in zone_problems(glare)
    # half the card out of the photo: no zone to read
    assert zone_problems(photo[:, : int(w * 0.45)]) == ["mrz_not_found"]
    # the zone read, but touching the photo's edge: the card is cut off
    box = read_mrz(photo).box
    right = int(cv2.boxPoints((box.center, box.size, box.angle))[:, 0].max())
    assert zone_problems(photo[:, : right + int(w * 0.003)]) == ["document_cut_off"]
    # a front without a face where the portrait should be
    assert front is not None
    blank = render(doc, None, random.Random(1))[1]
    assert blank is not None
    result = analyse_document(
        png_bytes(blank), want_mrz=False, want_portrait=True, today=TODAY, **LIMITS
    )
    assert result["problems"] == ["portrait_not_found"]


def test_the_mrz_command_prints_fields_and_checks(
    portrait: Image.Image, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from videoid.__main__ import main

    rng = random.Random(13)
    doc = make_document(rng, "TD3")
    side, _ = render(doc, portrait, rng)
    path = tmp_path / "passport.png"
    path.write_bytes(png_bytes(side))
    main(["mrz", str(path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["document_number"] == doc.document_number and out["checks_ok"] is True
    assert {c["name"] for c in out["checks"]} >= {"document_number", "composite"}
