"""Reading the machine readable zone from a photo of a document.

The pipeline, built to be fast on one core and right on phone photos:

1. **Find the zone** on a copy scaled to about 1000 pixels: black-hat filtering brings
   out dark print on a light ground, a horizontal gradient and closing merge the
   characters of a line into a wide block (:func:`find_zone`).
2. **Cut it out** of the full-resolution image, rotated upright, scaled to a fixed
   width, with the light evened out (:func:`extract_zone`).
3. **Rectify**: the characters stand in columns at a fixed pitch, so one homography maps
   their centres to a regular grid, undoing perspective and shear (:func:`rectify`).
4. **Read** each character cell against the OCR-B glyphs (:mod:`.ocr`), and take for
   each position the best character of the kind the format allows there; for
   alphanumeric fields, close second readings are tried so that the field agrees with
   its printed check digit (:func:`decode`). The other orientation is tried when the
   checks fail (a photo taken upside down).

The result is an :class:`~videoid.documents.mrz.MrzData` whose check results are those
of the corrected text: a correction never makes a wrong check digit pass, since the
check digits themselves are only ever read, never chosen.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .mrz import FORMATS, MrzData, MrzError, check_digit, parse_mrz
from .ocr import ALPHABET, Line, find_lines, measure_band, score_line

WORK_WIDTH = 1000
ZONE_WIDTH = 1600
"""Width in pixels the zone is cut out at."""
PITCH = 34
"""Character pitch in pixels of the rectified zone."""


@dataclass(frozen=True)
class ZoneBox:
    """Where the zone is in the original image: a rotated rectangle."""

    center: tuple[float, float]
    size: tuple[float, float]
    angle: float


@dataclass(frozen=True)
class Reading:
    data: MrzData
    box: ZoneBox


def _scaled(gray: NDArray[Any]) -> tuple[NDArray[Any], float]:
    scale = WORK_WIDTH / max(gray.shape[1], 1)
    if scale >= 1:
        return gray, 1.0
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def find_zone(gray: NDArray[Any]) -> Iterator[ZoneBox]:
    """Candidate zones, most likely first, in ``gray``'s coordinates."""
    small, scale = _scaled(gray)
    h, w = small.shape
    unit = max(w, h) / 1000
    k = lambda x, y: cv2.getStructuringElement(  # noqa: E731
        cv2.MORPH_RECT, (max(1, round(x * unit)), max(1, round(y * unit)))
    )
    small = cv2.GaussianBlur(small, (3, 3), 0)
    blackhat = cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, k(15, 7))
    grad = np.absolute(cv2.Sobel(blackhat, cv2.CV_32F, 1, 0, ksize=-1))
    grad = (255 * grad / max(float(grad.max()), 1e-6)).astype(np.uint8)
    grad = cv2.morphologyEx(grad, cv2.MORPH_CLOSE, k(11, 3))
    _, mask = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # join the lines of the zone into one block
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k(25, 17))
    mask = cv2.erode(mask, None, iterations=2)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, ZoneBox]] = []
    for contour in contours:
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        if bw < bh:
            bw, bh, angle = bh, bw, angle - 90
        if bw < 0.25 * w or bh < 4 * unit:
            continue
        ratio = bw / bh
        if not 2.5 <= ratio <= 30:
            continue
        fill = cv2.contourArea(contour) / max(bw * bh, 1)
        found.append(
            (bw * fill, ZoneBox((cx / scale, cy / scale), (bw / scale, bh / scale), angle))
        )
    for _, box in sorted(found, key=lambda f: -f[0])[:3]:
        yield box


def extract_zone(gray: NDArray[Any], box: ZoneBox, margin: float = 0.06) -> NDArray[Any]:
    """The zone cut out upright, with a margin, scaled to ``ZONE_WIDTH`` pixels (30 to
    44 characters: 36 to 53 pixels a character), and its light evened out."""
    (cx, cy), (bw, bh) = box.center, box.size
    # a line's height above and below: a zone found with one line missing is still whole
    bw, bh = bw * (1 + margin), bh + bw * 0.12
    scale = ZONE_WIDTH / bw
    out_w, out_h = round(bw * scale), round(bh * scale)
    m = cv2.getRotationMatrix2D((cx, cy), box.angle, scale)
    m[0, 2] += out_w / 2 - cx
    m[1, 2] += out_h / 2 - cy
    crop = cv2.warpAffine(gray, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderValue=255)
    background = cv2.morphologyEx(crop, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    background = cv2.GaussianBlur(background, (0, 0), 10)
    even = cv2.divide(crop, background, scale=255)
    return even


_DIGITS = "0123456789"
_LETTERS = "<ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_KINDS = {
    "D": _DIGITS,
    "C": "<" + _DIGITS,
    "L": _LETTERS,
    "A": ALPHABET,
    "S": "MF<",
}


def layout(fmt: str) -> tuple[str, ...]:
    """For each line of a format, the kind of character each position allows:
    D digit, C digit or filler, L letter or filler, A any, S sex."""
    if fmt == "TD1":
        return (
            "LL" + "LLL" + "A" * 9 + "C" + "A" * 15,
            "D" * 7 + "S" + "D" * 7 + "LLL" + "A" * 11 + "D",
            "L" * 30,
        )
    if fmt == "TD2":
        return ("L" * 36, "A" * 9 + "C" + "LLL" + "D" * 7 + "S" + "D" * 7 + "A" * 7 + "D")
    return ("L" * 44, "A" * 9 + "D" + "LLL" + "D" * 7 + "S" + "D" * 7 + "A" * 14 + "CD")


_MASKS = {kind: np.array([c in allowed for c in ALPHABET]) for kind, allowed in _KINDS.items()}


@dataclass(frozen=True)
class _Decoded:
    lines: tuple[str, ...]
    confidence: float


def decode(fmt: str, scores: Sequence[NDArray[Any]]) -> _Decoded:
    """The best text for each line under the format's character kinds, then the
    alphanumeric fields that carry a check digit brought into agreement with it where
    a close second reading allows."""
    kinds = layout(fmt)
    rows: list[list[str]] = []
    alternatives: list[list[list[tuple[float, str]]]] = []
    worst = 1.0
    for kind_line, line_scores in zip(kinds, scores, strict=True):
        row, alts = [], []
        for kind, s in zip(kind_line, line_scores, strict=True):
            masked = np.where(_MASKS[kind], s, -2.0)
            order = np.argsort(-masked)
            row.append(ALPHABET[order[0]])
            worst = min(worst, float(masked[order[0]]))
            alts.append([(float(masked[order[0]] - masked[j]), ALPHABET[j]) for j in order[1:3]])
        rows.append(row)
        alternatives.append(alts)

    def agree(r: int, a: int, b: int, digit_at: tuple[int, int]) -> None:
        printed = rows[digit_at[0]][digit_at[1]]
        if not printed.isdigit() or check_digit("".join(rows[r][a:b])) == printed:
            return
        options = sorted(
            (gap, i, ch) for i in range(a, b) for gap, ch in alternatives[r][i] if gap < 0.2
        )[:8]
        for count in (1, 2):
            for chosen in itertools.combinations(options, count):
                if len({i for _, i, _ in chosen}) < count:
                    continue
                field = rows[r][a:b]
                for _, i, ch in chosen:
                    field[i - a] = ch
                if check_digit("".join(field)) == printed:
                    rows[r][a:b] = field
                    return

    if fmt == "TD1":
        agree(0, 5, 14, (0, 14))
    else:
        agree(1, 0, 9, (1, 9))
        if fmt == "TD3":
            agree(1, 28, 42, (1, 42))
    return _Decoded(tuple("".join(r) for r in rows), worst)


def _fit_scores(scores: NDArray[Any], width: int) -> NDArray[Any]:
    """Make a line's score rows exactly ``width`` long: extra cells at the ends that
    look least like any character go; missing cells at the end are fillers."""
    while len(scores) > width:
        drop = 0 if scores[0].max() < scores[-1].max() else len(scores) - 1
        scores = np.delete(scores, drop, axis=0)
    if len(scores) < width:
        filler = np.full((width - len(scores), len(ALPHABET)), -1.0, np.float32)
        filler[:, 0] = 1.0
        scores = np.vstack([scores, filler])
    return scores


def rectify(
    ink: NDArray[Any], group: Sequence[Line], width: int
) -> tuple[NDArray[Any], list[Line]] | None:
    """Undo perspective and shear: the zone's characters stand in columns at a fixed
    pitch, so the centres found map to a regular grid by one homography. Returns the
    rectified image and its lines, or None when too few lines are complete."""
    src, dst = [], []
    spacing = float(np.median(np.diff([line.y for line in group]))) if len(group) > 1 else 0.0
    if spacing <= 0:
        return None
    ratio = spacing / float(np.median([line.pitch for line in group]))
    for r, line in enumerate(group):
        if len(line.boxes) != width:
            continue
        for i, b in enumerate(line.boxes):
            src.append((b.cx, b.top + line.height / 2))
            dst.append((PITCH * (i + 1.5), PITCH * ratio * (r + 1)))
    if len(src) < 2 * width:
        return None
    h, _ = cv2.findHomography(np.float32(src), np.float32(dst), cv2.RANSAC, PITCH * 0.3)
    if h is None:
        return None
    size = (round(PITCH * (width + 3)), round(PITCH * ratio * (len(group) + 1)))
    warped = cv2.warpPerspective(ink, h, size, flags=cv2.INTER_LINEAR, borderValue=0)
    _, binary = cv2.threshold(warped, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    lines = [line for line in find_lines(binary) if len(line.boxes) >= 20]
    if len(lines) != len(group):
        return None
    return warped, lines


def read_zone(crop: NDArray[Any]) -> _Decoded | None:
    """Read an upright crop holding the zone (dark print on a light ground)."""
    ink = cv2.bitwise_not(crop)
    _, binary = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    lines = [line for line in find_lines(binary) if len(line.boxes) >= 20]
    if len(lines) < 2:
        return None
    # the zone: the two or three lines that are longest and most alike in length
    best: _Decoded | None = None
    for n in (3, 2):
        for start in range(0, len(lines) - n + 1):
            group = lines[start : start + n]
            counts = [len(line.boxes) for line in group]
            for (rows, width), fmt in FORMATS.items():
                if rows != n or any(abs(c - width) > 4 for c in counts):
                    continue
                rectified = rectify(ink, group, width)
                if rectified is not None:
                    ink_r, group_r = rectified
                else:
                    ink_r, group_r = ink, group
                scores = [
                    _fit_scores(
                        score_line(
                            ink_r,
                            line,
                            measure_band(line, kinds) if len(line.boxes) == width else None,
                        ),
                        width,
                    )
                    for line, kinds in zip(group_r, layout(fmt), strict=True)
                ]
                decoded = decode(fmt, scores)
                if best is None or decoded.confidence > best.confidence:
                    best = decoded
        if best is not None:
            return best
    return best


def _score(reading: Reading) -> int:
    return sum(c.ok for c in reading.data.checks)


def _candidates(gray: NDArray[Any]) -> Iterator[ZoneBox]:
    """Zone candidates in ``gray``, then, for a scan the document fills edge to edge
    (whose characters are too large for the search's scale), in ``gray`` set in a
    frame 40% larger, as a photo would show it."""
    yield from find_zone(gray)
    h, w = gray.shape
    pad = round(max(h, w) * 0.2)
    framed = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=40)
    for box in find_zone(framed):
        (cx, cy), size, angle = box.center, box.size, box.angle
        yield ZoneBox((cx - pad, cy - pad), size, angle)


def read_mrz(image: NDArray[Any], today: datetime.date | None = None) -> Reading:
    """Find and read the zone in ``image`` (grey or BGR). Raises :class:`MrzError`
    when no zone can be read."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    best: Reading | None = None
    for box in _candidates(gray):
        crop = extract_zone(gray, box)
        for attempt in (crop, cv2.rotate(crop, cv2.ROTATE_180)):
            decoded = read_zone(attempt)
            if decoded is None:
                continue
            try:
                data = parse_mrz(decoded.lines, today)
            except MrzError:
                continue
            reading = Reading(data, box)
            if data.checks_ok:
                return reading
            # the other orientation, or the next candidate, may read better
            if best is None or _score(reading) > _score(best):
                best = reading
    if best is None:
        raise MrzError("no machine readable zone could be read in this image")
    return best
