"""The checks run on a document photo and on a selfie, in the analysis pool.

Each function takes bytes and plain values and returns a plain dict (it crosses a
process boundary). A photo that fails a check comes back with ``problems``: stable
codes the customer's page translates into what to fix ("too_blurry", "glare", ...).
"""

from __future__ import annotations

import datetime
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..liveness import faces
from .images import load_image
from .mrz import MrzData, MrzError
from .reader import read_mrz

SHARPNESS_MIN = 40.0
"""Variance of the Laplacian on the photo scaled to 1000 pixels."""
GLARE_SHARE_MAX = 0.015
"""Share of burnt-out pixels over the document allowed."""
EYES_OPEN_MIN = 0.18
YAW_RANGE = (0.3, 0.7)
ROLL_MAX = 15.0
FACE_LIGHT = (60.0, 215.0)


def _small_gray(rgb: NDArray[Any], side: int = 1000) -> NDArray[Any]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = side / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray


def sharpness(gray: NDArray[Any]) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def glare_share(gray: NDArray[Any]) -> float:
    """Share of pixels burnt out in clusters (a reflection), not single specks."""
    burnt = (gray >= 250).astype(np.uint8)
    burnt = cv2.morphologyEx(burnt, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return float(burnt.mean())


def _inside(points: NDArray[Any], width: int, height: int, margin: float = 0.01) -> bool:
    mx, my = width * margin, height * margin
    return bool(
        (points[:, 0] >= mx).all()
        and (points[:, 0] <= width - mx).all()
        and (points[:, 1] >= my).all()
        and (points[:, 1] <= height - my).all()
    )


def analyse_document(
    data: bytes,
    *,
    want_mrz: bool,
    want_portrait: bool,
    today: str,
    max_bytes: int,
    max_pixels: int,
) -> dict[str, Any]:
    """Validate a photo of one side of a document, check its quality, read its zone
    and find its portrait, as asked. Raises ImageRejected for a file that is not a
    usable image; quality problems come back in ``problems``."""
    image = load_image(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=600)
    gray = _small_gray(image.rgb)
    problems: list[str] = []
    quality = {
        "width": image.width,
        "height": image.height,
        "sharpness": round(sharpness(gray), 1),
        "glare": round(glare_share(gray), 4),
        "brightness": round(float(gray.mean()), 1),
    }
    if quality["sharpness"] < SHARPNESS_MIN:
        problems.append("too_blurry")
    if quality["glare"] > GLARE_SHARE_MAX:
        problems.append("glare")
    if quality["brightness"] < 50:
        problems.append("too_dark")
    out: dict[str, Any] = {"jpeg": image.jpeg, "quality": quality, "problems": problems}
    if want_mrz:
        try:
            reading = read_mrz(
                cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY), datetime.date.fromisoformat(today)
            )
        except MrzError:
            if not problems:
                problems.append("mrz_not_found")
        else:
            box = cv2.boxPoints((reading.box.center, reading.box.size, reading.box.angle))
            if not _inside(box, image.width, image.height):
                problems.append("document_cut_off")
            out["mrz"] = reading.data.to_json(datetime.date.fromisoformat(today))
    if want_portrait:
        found = faces.detect(image.rgb, side=800)
        if not found:
            if not problems:
                problems.append("portrait_not_found")
        else:
            face = found[0]
            left, top, right, bottom = face.box
            if not _inside(
                np.array([[left, top], [right, bottom]], np.float32), image.width, image.height, 0.0
            ):
                problems.append("document_cut_off")
            # the portrait with some room around the face, as printed
            w, h = right - left, bottom - top
            x0, y0 = max(0, int(left - 0.4 * w)), max(0, int(top - 0.6 * h))
            x1, y1 = (
                min(image.width, int(right + 0.4 * w)),
                min(image.height, int(bottom + 0.5 * h)),
            )
            crop = image.rgb[y0:y1, x0:x1]
            ok, encoded = cv2.imencode(
                ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            if ok:
                out["portrait"] = encoded.tobytes()
    return out


def analyse_selfie(
    data: bytes, portrait: bytes | None, *, max_bytes: int, max_pixels: int, threshold: float
) -> dict[str, Any]:
    """Check a selfie (one face, frontal, eyes open, light) and match it against the
    document's portrait."""
    image = load_image(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=240)
    found = faces.detect(image.rgb)
    problems: list[str] = []
    checks: dict[str, Any] = {"faces": len(found)}
    out: dict[str, Any] = {"jpeg": image.jpeg, "problems": problems, "checks": checks}
    if not found:
        problems.append("no_face")
        return out
    if len(found) > 1:
        problems.append("several_faces")
        return out
    face = found[0]
    gray = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY)
    left, top, right, bottom = face.box
    region = gray[top:bottom, left:right]
    checks.update(
        face_width=face.width,
        eye_aspect_ratio=round(face.eye_aspect_ratio(), 3),
        yaw_ratio=round(face.yaw_ratio(), 3),
        roll_degrees=round(face.roll_degrees(), 1),
        face_brightness=round(float(region.mean()) if region.size else 0.0, 1),
    )
    if face.width < 100:
        problems.append("face_too_small")
    if (
        not YAW_RANGE[0] <= checks["yaw_ratio"] <= YAW_RANGE[1]
        or abs(checks["roll_degrees"]) > ROLL_MAX
    ):
        problems.append("face_not_frontal")
    if checks["eye_aspect_ratio"] < EYES_OPEN_MIN:
        problems.append("eyes_closed")
    if checks["face_brightness"] < FACE_LIGHT[0]:
        problems.append("too_dark")
    elif checks["face_brightness"] > FACE_LIGHT[1]:
        problems.append("too_bright")
    if problems or portrait is None:
        return out
    selfie_encoding = faces.encode(image.rgb, face)
    p_image = load_image(portrait, max_bytes=max_bytes, max_pixels=max_pixels, min_side=32)
    p_faces = faces.detect(p_image.rgb)
    if not p_faces:
        out["match"] = None
        return out
    out["match"] = faces.compare(
        selfie_encoding, faces.encode(p_image.rgb, p_faces[0]), threshold
    ).to_json()
    return out


def mrz_file(data: bytes, today: datetime.date | None = None) -> MrzData:
    """The zone of a photo file (the CLI's ``videoid mrz``, the bot's country). Raises
    ImageRejected or MrzError."""
    image = load_image(data, max_bytes=50_000_000, max_pixels=60_000_000)
    gray = cv2.cvtColor(np.ascontiguousarray(image.rgb), cv2.COLOR_RGB2GRAY)
    return read_mrz(gray, today).data


def face_match_files(a: bytes, b: bytes, threshold: float) -> dict[str, Any]:
    """The CLI's comparison of two photos (largest face of each)."""
    result: dict[str, Any] = {"threshold": threshold}
    encodings = []
    for name, data in (("a", a), ("b", b)):
        image = load_image(data, max_bytes=50_000_000, max_pixels=60_000_000, min_side=32)
        face = faces.main_face(image.rgb)
        if face is None:
            return {**result, "error": f"no face in image {name.upper()}"}
        encodings.append(faces.encode(image.rgb, face))
    return {**result, **faces.compare(encodings[0], encodings[1], threshold).to_json()}
