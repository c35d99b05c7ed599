"""Face match on real photos (face_recognition 1.3.0's test images) and selfie checks."""

from __future__ import annotations

import io
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from videoid.bench.documents import make_document, phone_photo, portrait_from, render
from videoid.documents.analysis import analyse_selfie, face_match_files
from videoid.liveness import faces

from .conftest import PHOTOS

LIMITS = {"max_bytes": 15_000_000, "max_pixels": 40_000_000, "threshold": 0.6}


def _rgb(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name)), cv2.COLOR_BGR2RGB)


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def encodings() -> dict[str, np.ndarray]:
    out = {}
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        rgb = _rgb(name)
        found = faces.detect(rgb)
        assert len(found) == 1, name
        out[name] = faces.encode(rgb, found[0])
    return out


def test_same_person_matches(encodings: dict[str, np.ndarray]) -> None:
    for a, b in (
        ("obama.jpg", "obama2.jpg"),
        ("obama.jpg", "obama3.jpg"),
        ("obama2.jpg", "obama3.jpg"),
    ):
        result = faces.compare(encodings[a], encodings[b])
        assert result.match, (a, b, result.distance)


def test_different_people_do_not_match(encodings: dict[str, np.ndarray]) -> None:
    for a in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        result = faces.compare(encodings[a], encodings["biden.jpg"])
        assert not result.match and result.distance > 0.7, (a, result.distance)


def test_decisions_agree_with_the_reference_encoder(encodings: dict[str, np.ndarray]) -> None:
    reference = {n: faces.reference_encoding(_rgb(n)) for n in encodings}
    names = sorted(encodings)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = reference[a], reference[b]
            assert ra is not None and rb is not None
            ours = faces.distance(encodings[a], encodings[b])
            ref = faces.distance(ra, rb)
            assert (ours < 0.6) == (ref < 0.6)
            assert abs(ours - ref) < 0.05


@pytest.mark.parametrize(("portrait", "selfie", "same"), [
    ("obama.jpg", "obama2.jpg", True),
    ("biden.jpg", "obama2.jpg", False),
])  # fmt: skip
def test_a_portrait_printed_on_a_card_matches_its_person_only(
    portrait: str, selfie: str, same: bool
) -> None:
    rng = random.Random(portrait)
    doc = make_document(rng, "TD1")
    _, front = render(doc, portrait_from(PHOTOS / portrait), rng)
    assert front is not None
    card_photo = phone_photo(front, rng)
    result = face_match_files(card_photo, (PHOTOS / selfie).read_bytes(), 0.6)
    assert result["match"] is same, result


def test_selfie_checks_and_match_against_the_portrait() -> None:
    portrait = (PHOTOS / "obama.jpg").read_bytes()
    result = analyse_selfie((PHOTOS / "obama3.jpg").read_bytes(), portrait, **LIMITS)
    assert result["problems"] == []
    assert result["checks"]["faces"] == 1
    assert result["match"]["match"] is True
    other = analyse_selfie((PHOTOS / "biden.jpg").read_bytes(), portrait, **LIMITS)
    assert other["problems"] == [] and other["match"]["match"] is False


def test_two_faces_no_face_and_darkness_are_refused() -> None:
    a, b = _rgb("obama.jpg"), _rgb("biden.jpg")
    h = min(a.shape[0], b.shape[0])
    pair = np.hstack(
        [
            cv2.resize(a, (a.shape[1] * h // a.shape[0], h)),
            cv2.resize(b, (b.shape[1] * h // b.shape[0], h)),
        ]
    )
    assert analyse_selfie(_jpeg(pair), None, **LIMITS)["problems"] == ["several_faces"]
    wall = np.full((600, 800, 3), 180, np.uint8)
    assert analyse_selfie(_jpeg(wall), None, **LIMITS)["problems"] == ["no_face"]
    dark = (a.astype(np.float32) * 0.22).astype(np.uint8)
    assert analyse_selfie(_jpeg(dark), None, **LIMITS)["problems"] == ["too_dark"]


def test_a_turned_head_is_not_frontal() -> None:
    rgb = _rgb("obama.jpg")
    face = faces.detect(rgb)[0]
    assert 0.3 < face.yaw_ratio() < 0.7 and face.eye_aspect_ratio() > 0.18
    # squash one side of the face: the nose moves off the middle as when turning
    h = rgb.shape[0]
    cx = (face.box[0] + face.box[2]) // 2
    left = cv2.resize(rgb[:, :cx], (max(1, int(cx * 0.45)), h))
    turned = np.ascontiguousarray(np.hstack([left, rgb[:, cx:]]))
    result = analyse_selfie(_jpeg(turned), None, **LIMITS)
    assert result["checks"]["faces"] == 1 and result["problems"] == ["face_not_frontal"]
