"""Synthetic identity documents and phone photos of them, for tests and benchmarks.

A :class:`SyntheticDocument` is a TD1 identity card (front with the portrait and the
printed data, back with a three-line zone) or a TD3 passport data page (portrait and a
two-line zone), drawn with the OCR-B font that ICAO 9303 prescribes (Debian's
``fonts-ocr-b``). :func:`phone_photo` then does to it what a phone camera does: a
background around the card, rotation and perspective, uneven light, blur, noise and
JPEG compression. Everything is seeded, so the same seed gives the same photos.

These are test data, clearly fictitious (issuing state ``UTO``, "Utopia", as in the
ICAO specimens); the names are real names of varying length.
"""

from __future__ import annotations

import datetime
import io
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..documents.mrz import build_mrz

OCR_B = "/usr/share/fonts/opentype/ocr-b/OCRB.otf"
SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SANS_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

NAMES: tuple[tuple[str, str], ...] = (
    ("Rossi", "Mario"),
    ("Esposito", "Giuseppe Antonio"),
    ("Bianchi", "Anna"),
    ("Lo Russo", "Maria Grazia"),
    ("Popescu", "Andrei"),
    ("Ionescu", "Elena Cristina"),
    ("Dumitrescu", "Ioan"),
    ("Wojciechowska", "Katarzyna Magdalena"),
    ("Nowak", "Jan"),
    ("Kowalczyk", "Agnieszka"),
    ("Müller", "Jürgen"),
    ("Schwarzenberger-Hohenlohe", "Maximilian Alexander"),
    ("De la Cruz Garcia", "Maria del Carmen"),
    ("Nguyen", "Thi Minh Khai"),
    ("O'Connor", "Siobhan"),
    ("Li", "Na"),
    ("Papadopoulou", "Eleni"),
    ("Van der Berg", "Pieter Jan"),
    ("Andersson", "Karl Johan Emanuel"),
    ("Zielinski", "Tomasz"),
)


@dataclass(frozen=True)
class SyntheticDocument:
    fmt: Literal["TD1", "TD3"]
    surname: str
    given_names: str
    document_number: str
    date_of_birth: datetime.date
    date_of_expiry: datetime.date
    sex: str
    nationality: str = "UTO"
    issuing_state: str = "UTO"
    optional_data: str = ""
    lines: tuple[str, ...] = field(default=())


def make_document(rng: random.Random, fmt: Literal["TD1", "TD3"]) -> SyntheticDocument:
    surname, given = rng.choice(NAMES)
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    number = rng.choice(letters) + rng.choice(letters) + "".join(rng.choices("0123456789", k=7))
    dob = datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 66))
    doe = datetime.date(2027, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 9))
    sex = rng.choice("FM")
    optional = "".join(rng.choices("0123456789", k=rng.choice((0, 9)))) if fmt == "TD3" else ""
    lines = build_mrz(
        fmt,
        document_code="P" if fmt == "TD3" else "ID",
        issuing_state="UTO",
        document_number=number,
        surname=surname,
        given_names=given,
        nationality="UTO",
        date_of_birth=dob,
        sex=sex,
        date_of_expiry=doe,
        optional_data=optional,
    )
    return SyntheticDocument(
        fmt, surname, given, number, dob, doe, sex, optional_data=optional, lines=lines
    )


# Sizes in millimetres (ICAO 9303 parts 4 and 5).
_SIZE_MM = {"TD1": (85.6, 54.0), "TD3": (125.0, 88.0)}
_PITCH_MM = 2.54  # 10 characters per inch
_LINE_MM = 4.23  # 6 lines per inch


def _font(path: str, px: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(6, round(px)))


def _background(w: int, h: int, rng: random.Random) -> Image.Image:
    base = np.zeros((h, w, 3), np.float32)
    tint = np.array([rng.uniform(200, 245), rng.uniform(215, 245), rng.uniform(205, 240)])
    base[:] = tint
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # a guilloche: a few interfering sine waves, as security printing has
    for k in range(3):
        f = rng.uniform(0.01, 0.03)
        phase = rng.uniform(0, 6.28)
        wave = np.sin(xx * f + np.sin(yy * f * 0.7 + phase) * 3)
        base -= (wave > 0.96)[..., None] * np.array([25, 15, 30]) * (k + 1) / 3
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def portrait_from(photo: str | Path) -> Image.Image:
    """The face in ``photo``, cropped as a document portrait (35 x 45 proportions)."""
    import face_recognition

    image = face_recognition.load_image_file(str(photo))
    faces = face_recognition.face_locations(image)
    if not faces:
        raise ValueError(f"no face in {photo}")
    top, right, bottom, left = max(faces, key=lambda f: (f[2] - f[0]) * (f[1] - f[3]))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    fh = bottom - top
    h = fh * 2.0
    w = h * 35 / 45
    y0 = max(0, int(cy - h * 0.45))
    x0 = max(0, int(cx - w / 2))
    crop = image[y0 : int(y0 + h), x0 : int(x0 + w)]
    return Image.fromarray(crop).convert("L").convert("RGB")


def render(
    doc: SyntheticDocument,
    portrait: Image.Image | None,
    rng: random.Random,
    px_per_mm: float = 20.0,
) -> tuple[Image.Image, Image.Image | None]:
    """Draw the document: ``(side with the zone, other side or None)``. For a TD1 the
    zone is on the back and the portrait on the front; a TD3 has both on one page."""
    w_mm, h_mm = _SIZE_MM[doc.fmt]
    size = (round(w_mm * px_per_mm), round(h_mm * px_per_mm))
    mm = px_per_mm

    def face(img: Image.Image, x: float, y: float, w: float) -> None:
        if portrait is not None:
            p = portrait.resize((round(w * mm), round(w * 45 / 35 * mm)))
            img.paste(p, (round(x * mm), round(y * mm)))

    def printed(draw: ImageDraw.ImageDraw, x: float, y: float) -> None:
        label, value = _font(SANS, 1.6 * mm), _font(SANS_BOLD, 2.4 * mm)
        rows = (
            ("Surname / Nom", doc.surname.upper()),
            ("Given names / Prénoms", doc.given_names.upper()),
            ("Date of birth", doc.date_of_birth.strftime("%d.%m.%Y")),
            ("Sex", doc.sex),
            ("Document no.", doc.document_number),
            ("Date of expiry", doc.date_of_expiry.strftime("%d.%m.%Y")),
        )
        for i, (k, v) in enumerate(rows):
            draw.text((x * mm, (y + i * 5.6) * mm), k, fill=(70, 70, 90), font=label)
            draw.text((x * mm, (y + i * 5.6 + 1.8) * mm), v, fill=(20, 20, 30), font=value)

    def zone(img: Image.Image, lines: tuple[str, ...]) -> None:
        draw = ImageDraw.Draw(img)
        font = _font(OCR_B, 3.4 * mm)
        n = len(lines)
        left = (w_mm - len(lines[0]) * _PITCH_MM) / 2
        top = h_mm - 1.2 - n * _LINE_MM
        for r, line in enumerate(lines):
            for c, ch in enumerate(line):
                draw.text(
                    ((left + c * _PITCH_MM) * mm, (top + r * _LINE_MM) * mm),
                    ch,
                    fill=(15, 15, 20),
                    font=font,
                )

    title = _font(SANS_BOLD, 3.2 * mm)
    if doc.fmt == "TD3":
        page = _background(*size, rng)
        draw = ImageDraw.Draw(page)
        draw.text((6 * mm, 3 * mm), "UTOPIA   PASSPORT / PASSEPORT", fill=(30, 40, 90), font=title)
        face(page, 6, 12, 32)
        printed(draw, 44, 12)
        zone(page, doc.lines)
        return page, None
    front = _background(*size, rng)
    draw = ImageDraw.Draw(front)
    draw.text((4 * mm, 2.5 * mm), "UTOPIA   IDENTITY CARD", fill=(30, 40, 90), font=title)
    face(front, 4, 10, 24)
    printed(draw, 32, 9)
    back = _background(*size, rng)
    bdraw = ImageDraw.Draw(back)
    bdraw.text(
        (4 * mm, 3 * mm),
        "Address: 1 Specimen Street, Utopia",
        fill=(40, 40, 60),
        font=_font(SANS, 2.2 * mm),
    )
    zone(back, doc.lines)
    return back, front


@dataclass(frozen=True)
class PhotoSettings:
    width: int = 3000
    height: int = 2250
    card_fill: tuple[float, float] = (0.55, 0.8)
    """Share of the photo's width the document takes."""
    rotation_degrees: float = 8.0
    perspective: float = 0.05
    """Largest corner displacement, as a share of the document's size."""
    blur_sigma: tuple[float, float] = (0.6, 2.2)
    noise_sigma: tuple[float, float] = (2.0, 7.0)
    light: tuple[float, float] = (0.55, 1.15)
    jpeg_quality: tuple[int, int] = (55, 90)


def phone_photo(
    card: Image.Image, rng: random.Random, settings: PhotoSettings = PhotoSettings()
) -> bytes:
    """A JPEG that looks like a phone photo of ``card`` lying on a table."""
    s = settings
    W, H = s.width, s.height
    nprng = np.random.default_rng(rng.randrange(2**32))
    # the table: a colour, a texture and some clutter
    table = np.empty((H, W, 3), np.float32)
    table[:] = [rng.uniform(40, 200) for _ in range(3)]
    texture = cv2.GaussianBlur(nprng.normal(0, 25, (H // 8, W // 8)).astype(np.float32), (0, 0), 2)
    table += cv2.resize(texture, (W, H))[..., None]
    for _ in range(rng.randrange(0, 4)):
        p1 = (rng.randrange(W), rng.randrange(H))
        p2 = (rng.randrange(W), rng.randrange(H))
        cv2.line(table, p1, p2, [rng.uniform(0, 255) for _ in range(3)], rng.randrange(3, 30))
    src = np.asarray(card.convert("RGB"), np.float32)
    ch, cw = src.shape[:2]
    width = rng.uniform(*s.card_fill) * W
    height = width * ch / cw
    cx = W / 2 + rng.uniform(-0.08, 0.08) * W
    cy = H / 2 + rng.uniform(-0.08, 0.08) * H
    angle = math.radians(rng.uniform(-s.rotation_degrees, s.rotation_degrees))
    corners = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        x = dx * width / 2 + rng.uniform(-s.perspective, s.perspective) * width
        y = dy * height / 2 + rng.uniform(-s.perspective, s.perspective) * height
        corners.append(
            (
                cx + x * math.cos(angle) - y * math.sin(angle),
                cy + x * math.sin(angle) + y * math.cos(angle),
            )
        )
    m = cv2.getPerspectiveTransform(
        np.float32([(0, 0), (cw, 0), (cw, ch), (0, ch)]), np.float32(corners)
    )
    warped = cv2.warpPerspective(src, m, (W, H), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ch, cw), np.float32), m, (W, H))
    img = table * (1 - mask[..., None]) + warped * mask[..., None]
    # uneven light: a plane of brightness across the photo, plus a soft vignette
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    lo, hi = s.light
    a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
    plane = (a * (xx / W - 0.5) + b * (yy / H - 0.5)) / 1.0
    gain = lo + (hi - lo) * (0.5 + plane)
    gain *= 1 - 0.25 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2)
    img *= np.clip(gain, 0.3, 1.3)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*s.blur_sigma))
    img += nprng.normal(0, rng.uniform(*s.noise_sigma), img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randrange(*s.jpeg_quality))
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
