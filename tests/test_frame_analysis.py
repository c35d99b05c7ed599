"""What a worker measures on real frames: the face_recognition 1.3.0 photos, geometric
warps of them (a tilted head, a mirrored one), several faces, none, bad light, blur,
a document held close, and the live face's descriptor against the stored photos."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
from PIL import Image

from videoid.bench.documents import make_document, render
from videoid.liveness.frame_analysis import (
    analyse_frame,
    face_descriptor,
    reference_encoding,
)
from videoid.liveness.signals import FrameResult, LiveSignals

from .conftest import PHOTOS


def frame(name: str, width: int = 640, height: int = 480) -> np.ndarray:
    """A photo fitted into a camera frame on a grey background."""
    image = np.asarray(Image.open(PHOTOS / name).convert("RGB"))
    scale = height / image.shape[0]
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), 90, np.uint8)
    w = min(width, image.shape[1])
    x = (width - w) // 2
    out[:, x : x + w] = image[:, (image.shape[1] - w) // 2 : (image.shape[1] - w) // 2 + w]
    return out


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderValue=(90, 90, 90))


@pytest.fixture(scope="module")
def obama() -> np.ndarray:
    return frame("obama.jpg")


def test_one_face_its_box_and_measures(obama: np.ndarray) -> None:
    r = analyse_frame(obama, 12.5)
    assert r["at"] == 12.5 and (r["width"], r["height"]) == (640, 480)
    assert r["faces"] == 1
    left, top, width, height = r["box"]
    assert 0.2 < left + width / 2 < 0.8 and 0.1 < width < 0.7
    assert 0 <= top < 0.6 and 0.1 < height < 0.9
    m = r["measures"]
    assert 0.12 < m["ear"] < 0.4  # eyes open
    assert abs(m["yaw"]) < 10 and abs(m["roll"]) < 8  # looking at the camera
    assert 60 < r["brightness"] < 220 and r["sharpness"] > 20
    assert len(r["thumb"]) == 32 * 24 and r["liveness_ms"] > 0


@pytest.mark.parametrize("degrees", [-15, 15])
def test_a_tilted_head_is_seen_as_rolled(obama: np.ndarray, degrees: float) -> None:
    """cv2 turns the picture anticlockwise for positive angles: the image-right eye
    rises, so the head tilts towards the customer's right shoulder (negative roll)."""
    upright = analyse_frame(obama, 0)["measures"]["roll"]
    roll = analyse_frame(rotated(obama, degrees), 0)["measures"]["roll"]
    assert roll - upright == pytest.approx(-degrees, abs=4)


def test_a_turned_head_and_its_mirror_image() -> None:
    """obama2 looks to his right; mirrored, the same head looks to his left."""
    turned = frame("obama2.jpg")
    yaw = analyse_frame(turned, 0)["measures"]["yaw"]
    mirrored = analyse_frame(np.ascontiguousarray(turned[:, ::-1]), 0)["measures"]["yaw"]
    assert yaw < -8 and mirrored > 8
    assert yaw == pytest.approx(-mirrored, abs=6)


def test_several_faces_and_none(obama: np.ndarray) -> None:
    two = np.full((480, 640, 3), 90, np.uint8)  # two people side by side
    two[:240, :320] = cv2.resize(obama, (320, 240))
    two[:240, 320:] = cv2.resize(frame("biden.jpg"), (320, 240))
    # face mesh's own detector misses faces this small; the full-range one counts them
    assert analyse_frame(two, 0, want_far_faces=True)["faces"] == 2
    assert analyse_frame(two, 0, want_far_faces=True)["far_faces"] == 2
    empty = np.full((480, 640, 3), 120, np.uint8)
    r = analyse_frame(empty, 0)
    assert r["faces"] == 0 and "box" not in r and "measures" not in r


def test_light_and_blur(obama: np.ndarray) -> None:
    signals = LiveSignals()
    dark = (obama * 0.2).astype(np.uint8)
    signals.add(FrameResult.from_dict(analyse_frame(dark, 0)))
    assert "too_dark" in signals.flags(0)
    blurred = cv2.GaussianBlur(obama, (0, 0), 6)
    sharp_r, blur_r = analyse_frame(obama, 0), analyse_frame(blurred, 0)
    assert blur_r["sharpness"] < sharp_r["sharpness"] / 5
    blur = LiveSignals()
    blur.add(FrameResult.from_dict(blur_r))
    assert "blurry" in blur.flags(0)


def test_a_document_held_close_is_seen(obama: np.ndarray) -> None:
    card, _ = render(make_document(random.Random(2), "TD1"), None, random.Random(2), 10.0)
    card_rgb = np.asarray(card.convert("RGB"))
    photo = np.asarray(Image.open(PHOTOS / "obama.jpg").convert("RGB"))
    room = cv2.resize(photo[: photo.shape[1] * 3 // 4], (640, 480))  # the whole picture
    held = (room * 0.5).astype(np.uint8)  # a darker room behind the card
    held[110:362, 120:520] = cv2.resize(card_rgb, (400, 252))
    assert analyse_frame(held, 0, want_document=True)["document"] >= 0.2
    assert analyse_frame(obama, 0, want_document=True)["document"] < 0.2


def test_the_live_face_against_the_stored_photos(obama: np.ndarray) -> None:
    r = analyse_frame(obama, 0)
    live = np.array(face_descriptor(obama, r["box"]))
    same = reference_encoding((PHOTOS / "obama2.jpg").read_bytes(), 15_000_000, 40_000_000)
    other = reference_encoding((PHOTOS / "biden.jpg").read_bytes(), 15_000_000, 40_000_000)
    assert same is not None and other is not None
    assert np.linalg.norm(live - np.array(same)) < 0.6
    assert np.linalg.norm(live - np.array(other)) >= 0.6
    blank = Image.new("RGB", (400, 400), (200, 200, 200))
    import io

    buf = io.BytesIO()
    blank.save(buf, format="JPEG")
    assert reference_encoding(buf.getvalue(), 15_000_000, 40_000_000) is None


def test_a_replayed_frame_stream_is_frozen(obama: np.ndarray) -> None:
    """The same decoded picture again and again (a photo replayed): frozen; the same
    picture with a camera's noise on it: not."""
    frozen = LiveSignals()
    for i in range(12):
        frozen.add(FrameResult.from_dict(analyse_frame(obama, i * 0.2)))
    assert "frames_frozen" in frozen.flags(2.4)
    noisy = LiveSignals()
    rng = np.random.default_rng(1)
    for i in range(12):
        jitter = rng.integers(-12, 12, obama.shape, dtype=np.int16)
        shifted = np.roll(obama, i % 3, axis=1).astype(np.int16) + jitter
        noisy.add(
            FrameResult.from_dict(analyse_frame(shifted.clip(0, 255).astype(np.uint8), i * 0.2))
        )
    assert "frames_frozen" not in noisy.flags(2.4)
