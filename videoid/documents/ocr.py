"""A reader for OCR-B, the one typeface a machine readable zone is printed in.

ICAO 9303 prescribes OCR-B at ten characters per inch for every zone, so instead of a
general OCR engine (which reads ``<<`` as ``<K<`` and takes a second per photo) the
characters are cut out of the zone one by one and compared with the 37 glyphs of the
typeface itself (Debian's ``fonts-ocr-b``), rendered once, sharp and blurred. Each
position gets a score for every character; :mod:`videoid.documents.reader` then picks,
for each position, the best character of the kind that position allows.

Everything here is plain numpy/OpenCV on a crop of a few hundred kilobytes: a zone is
read in milliseconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

OCR_B_FONT = "/usr/share/fonts/opentype/ocr-b/OCRB.otf"
ALPHABET = "<0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CELL = (20, 28)
"""Width and height every character cell is compared at."""
_MARGIN_Y = 0.18


@dataclass(frozen=True)
class Glyphs:
    vectors: tuple[NDArray[Any], ...]
    """Per band, (variants * 37, 560) unit vectors. OCR-B's digits stand taller than
    its capitals, so a line's band is measured either on capitals or on digits: one
    set of templates for each."""
    labels: NDArray[Any]
    """Index into ALPHABET of each row of ``vectors``."""
    bands: tuple[tuple[float, float], ...]
    """(top, bottom) of the capitals' and of the digits' band, in font pixels."""


def _normalise(cells: NDArray[Any]) -> NDArray[Any]:
    flat = cells.reshape(len(cells), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norm, 1e-6)


@functools.cache
def glyphs() -> Glyphs:
    size = 96
    font = ImageFont.truetype(OCR_B_FONT, size)
    advance = font.getlength("0")
    renders = []
    for ch in ALPHABET:
        img = Image.new("L", (int(advance * 3), size * 2), 0)
        ImageDraw.Draw(img).text((advance, size // 2), ch, fill=255, font=font)
        renders.append(np.asarray(img))
    # the line band: from the top of the capitals to the baseline
    bands = []
    for kind in (str.isalpha, str.isdigit):
        tops, bottoms = [], []
        for ch, arr in zip(ALPHABET, renders, strict=True):
            ys = np.nonzero(arr.max(axis=1))[0]
            if kind(ch):
                tops.append(ys[0])
                bottoms.append(ys[-1])
        bands.append((float(np.median(tops)), float(np.median(bottoms))))
    variants: list[tuple[int, NDArray[Any], float]] = []
    for index, arr in enumerate(renders):
        xs = np.nonzero(arr.max(axis=0))[0]
        cx = (xs[0] + xs[-1]) / 2
        for sigma in (0.0, 2.0, 4.0):
            for weight in (-1, 0, 1):
                variant = arr.astype(np.float32)
                if weight:
                    op = cv2.dilate if weight > 0 else cv2.erode
                    variant = op(variant, np.ones((3, 3), np.uint8), iterations=2)
                if sigma:
                    variant = cv2.GaussianBlur(variant, (0, 0), sigma)
                variants.append((index, variant, cx))
    vectors = tuple(
        _normalise(np.array([_cell(v, cx, top, bottom - top, advance) for _, v, cx in variants]))
        for top, bottom in bands
    )
    labels = np.array([index for index, _, _ in variants])
    return Glyphs(vectors, labels, tuple(bands))


def _cell(img: NDArray[Any], cx: float, top: float, height: float, pitch: float) -> NDArray[Any]:
    """The character cell around ink centre ``cx`` on the band starting at ``top``,
    resized to :data:`CELL` (ink bright)."""
    x0, x1 = cx - pitch * 0.55, cx + pitch * 0.55
    y0, y1 = top - height * _MARGIN_Y, top + height * (1 + _MARGIN_Y)
    w, h = CELL
    # an affine map from the cell to CELL, with sub-pixel accuracy and white outside
    m = np.float32([[(x1 - x0) / w, 0, x0], [0, (y1 - y0) / h, y0]])
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP, borderValue=0.0
    )


@dataclass(frozen=True)
class CharBox:
    cx: float
    top: float
    """Top of the line's band at this character (fitted along the line)."""
    ink_top: float = -1.0
    ink_height: float = 0.0
    """The character's own ink, when it was found as one part (not split or inferred)."""


@dataclass
class Line:
    boxes: list[CharBox]
    height: float
    pitch: float
    y: float
    """Vertical centre, for ordering lines."""


def find_lines(ink: NDArray[Any], min_chars: int = 20) -> list[Line]:
    """Text lines of evenly pitched characters in a binary image (ink = 255)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    comps = [
        (float(x), float(y), float(w), float(h))
        for x, y, w, h, area in stats[1:]
        if h >= 6 and area >= 12 and w < 8 * h
    ]
    if not comps:
        return []
    heights = np.array([c[3] for c in comps])
    # the capitals' height: the upper part of the height distribution of text-sized parts
    big = np.percentile(heights, 90)
    tall = heights[(heights > big * 0.45) & (heights <= big * 1.15)]
    cap = float(np.median(tall)) if len(tall) else float(big)
    comps = [c for c in comps if cap * 0.3 <= c[3] <= cap * 1.6]
    comps.sort(key=lambda c: c[0])
    chains: list[list[tuple[float, float, float, float]]] = []
    for comp in comps:
        cy = comp[1] + comp[3] / 2
        best, best_d = None, None
        for chain in chains:
            last = chain[-1]
            dx = comp[0] - (last[0] + last[2])
            dy = abs(cy - (last[1] + last[3] / 2))
            if -cap * 0.3 < dx < cap * 3 and dy < cap * 0.45 and (best_d is None or dy < best_d):
                best, best_d = chain, dy
        if best is None:
            chains.append([comp])
        else:
            best.append(comp)
    lines = []
    for chain in chains:
        if len(chain) < min_chars * 0.6:
            continue
        centres = np.array([c[0] + c[2] / 2 for c in chain])
        gaps = np.diff(centres)
        if not len(gaps):
            continue
        pitch = float(np.median(gaps))
        tall_parts = [c for c in chain if c[3] >= cap * 0.8]
        if len(tall_parts) < 3:
            continue
        # the band's top and height along the line (it may slope slightly)
        tx = np.array([c[0] + c[2] / 2 for c in tall_parts])
        ty = np.array([c[1] for c in tall_parts])
        slope, intercept = np.polyfit(tx, ty, 1) if len(tx) > 1 else (0.0, float(ty[0]))
        height = float(np.median([c[3] for c in tall_parts]))
        boxes: list[CharBox] = []
        previous = None
        for x, _y, w, _h in chain:
            cx = x + w / 2
            if previous is not None:
                # a gap of more than one pitch: characters too faint to be found
                missing = round((cx - previous) / pitch) - 1
                for k in range(max(0, missing)):
                    mx = previous + (k + 1) * (cx - previous) / (missing + 1)
                    boxes.append(CharBox(mx, slope * mx + intercept))
            parts = max(1, round(w / pitch)) if w > pitch * 1.4 else 1
            for k in range(parts):
                px = x + (k + 0.5) * w / parts
                if parts == 1:
                    boxes.append(CharBox(px, slope * px + intercept, _y, _h))
                else:
                    boxes.append(CharBox(px, slope * px + intercept))
            previous = x + (parts - 0.5) * w / parts
        lines.append(Line(boxes, height, pitch, float(np.mean(ty)) + height / 2))
    lines.sort(key=lambda line: line.y)
    return lines


@dataclass(frozen=True)
class Band:
    """A line's band measured on characters of one kind: ``top(x) = slope * x +
    intercept``, ``height`` pixels, ``kind`` 0 for capitals, 1 for digits."""

    slope: float
    intercept: float
    height: float
    kind: int


def measure_band(line: Line, kinds: str) -> Band:
    """The band of ``line`` measured on the positions that ``kinds`` (one letter per
    position, as :func:`videoid.documents.reader.layout` gives) says hold digits; on a
    line without such positions, on its capitals."""
    digits = [b for b, k in zip(line.boxes, kinds, strict=False) if k == "D" and b.ink_height > 0]
    chosen, kind = (digits, 1) if len(digits) >= 4 else ([], 0)
    if not chosen:
        chosen = [b for b in line.boxes if b.ink_height >= line.height * 0.85]
    if len(chosen) < 2:
        return Band(0.0, float(np.median([b.top for b in line.boxes])), line.height, 0)
    height = float(np.median([b.ink_height for b in chosen]))
    slope, intercept = np.polyfit([b.cx for b in chosen], [b.ink_top for b in chosen], 1)
    return Band(float(slope), float(intercept), height, kind)


def score_line(gray_ink: NDArray[Any], line: Line, band: Band | None = None) -> NDArray[Any]:
    """(characters, 37) similarity of each character cell to each glyph, in [-1, 1].
    Each template set (capitals' band, digits' band) is compared on cells shaped by its
    own band, derived from the one measured with the typeface's proportions."""
    g = glyphs()
    if not line.boxes:
        return np.zeros((0, len(ALPHABET)), np.float32)
    out = np.full((len(line.boxes), len(ALPHABET)), -1.0, np.float32)
    if band is None:
        band = Band(0.0, 0.0, line.height, 0)
        tops = [b.top for b in line.boxes]
    else:
        tops = [band.slope * b.cx + band.intercept for b in line.boxes]
    m_top, m_bottom = g.bands[band.kind]
    scale = band.height / (m_bottom - m_top)
    for (k_top, k_bottom), vectors in zip(g.bands, g.vectors, strict=True):
        offset = (k_top - m_top) * scale
        height = (k_bottom - k_top) * scale
        cells = np.array(
            [
                _cell(gray_ink, b.cx, t + offset, height, line.pitch)
                for b, t in zip(line.boxes, tops, strict=True)
            ]
        )
        sims = _normalise(cells) @ vectors.T
        for index in range(len(ALPHABET)):
            np.maximum(out[:, index], sims[:, g.labels == index].max(axis=1), out=out[:, index])
    return out
