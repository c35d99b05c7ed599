"""Faces in still images: detection, landmarks, quality checks and the face match.

Built on dlib's models as ``face_recognition`` ships them (HOG detector, 68- and
5-point shape predictors, the ResNet face descriptor), used directly so that the
expensive part is paid once: the detector runs on a copy scaled so that faces are
about the size it was trained for, and the descriptor is computed on the full-size
image, aligned by the landmarks, exactly as ``face_recognition.face_encodings`` does.
The decision is dlib's: the same person when the descriptors are closer than 0.6.

The module is synchronous and CPU bound: callers run it in the analysis pool
(:mod:`videoid.liveness.pool`), never on the event loop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

THRESHOLD = 0.6
DETECT_SIDE = 480
"""Longest side of the copy the detector runs on (with one 2x upsampling)."""


@functools.cache
def _models() -> tuple[Any, Any, Any, Any]:
    import dlib
    import face_recognition_models as frm

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_model_location()),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def warm() -> None:
    """Load the face models (a worker's first job, or the pools' health probe)."""
    _models()


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]
    """(left, top, right, bottom) in the image's pixels."""
    landmarks: NDArray[Any] = field(repr=False)
    """(68, 2) points."""
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    def eye_aspect_ratio(self) -> float:
        """Mean of both eyes' aspect ratios (Soukupová and Čech 2016): about 0.3 with
        the eyes open, under 0.2 when they close."""

        def ear(p: NDArray[Any]) -> float:
            a = float(np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4]))
            return a / max(2 * float(np.linalg.norm(p[0] - p[3])), 1e-6)

        return (ear(self.landmarks[36:42]) + ear(self.landmarks[42:48])) / 2

    def yaw_ratio(self) -> float:
        """Where the nose tip sits between the two sides of the jaw: 0.5 looking
        straight at the camera, towards 0 or 1 as the head turns."""
        left, right, nose = self.landmarks[0], self.landmarks[16], self.landmarks[30]
        return float((nose[0] - left[0]) / max(right[0] - left[0], 1e-6))

    def roll_degrees(self) -> float:
        left_eye = self.landmarks[36:42].mean(axis=0)
        right_eye = self.landmarks[42:48].mean(axis=0)
        d = right_eye - left_eye
        return float(np.degrees(np.arctan2(d[1], d[0])))


def _scaled(rgb: NDArray[Any], side: int) -> tuple[NDArray[Any], float]:
    scale = side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb, 1.0
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def detect(rgb: NDArray[Any], side: int = DETECT_SIDE, upsample: int = 1) -> list[Face]:
    """Every face in an RGB image, largest first. ``upsample`` 1 finds faces down to
    40 pixels in the scaled copy (a second person in the background); 0, four times
    faster, only from 80."""
    import dlib

    detector, predictor68, _, _ = _models()
    small, scale = _scaled(rgb, side)
    rects, scores, _ = detector.run(small, upsample, -0.2)
    faces = []
    h, w = rgb.shape[:2]
    for rect, score in zip(rects, scores, strict=True):
        box = (
            max(0, round(rect.left() / scale)),
            max(0, round(rect.top() / scale)),
            min(w, round(rect.right() / scale)),
            min(h, round(rect.bottom() / scale)),
        )
        shape = predictor68(rgb, dlib.rectangle(*box))
        points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        faces.append(Face(box, points, float(score)))
    faces.sort(key=lambda f: -f.width)
    return faces


def main_face(rgb: NDArray[Any]) -> Face | None:
    """The largest face, for matching: the quick search first, the fine one when it
    finds nothing (a small or distant face)."""
    found = detect(rgb, upsample=0) or detect(rgb, upsample=1)
    return found[0] if found else None


def encode(rgb: NDArray[Any], face: Face) -> NDArray[Any]:
    """The 128-dimensional descriptor of ``face`` (aligned on the 5-point landmarks,
    as face_recognition does)."""
    import dlib

    _, _, predictor5, encoder = _models()
    shape = predictor5(rgb, dlib.rectangle(*face.box))
    return np.array(encoder.compute_face_descriptor(rgb, shape, 1), np.float32)


def distance(a: NDArray[Any], b: NDArray[Any]) -> float:
    return float(np.linalg.norm(a - b))


@dataclass(frozen=True)
class Match:
    distance: float
    threshold: float
    match: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "distance": round(self.distance, 4),
            "threshold": self.threshold,
            "match": self.match,
        }


def compare(a: NDArray[Any], b: NDArray[Any], threshold: float = THRESHOLD) -> Match:
    d = distance(a, b)
    return Match(d, threshold, d < threshold)


def reference_encoding(rgb: NDArray[Any]) -> NDArray[Any] | None:
    """face_recognition's own way, with its defaults (for the benchmark and tests)."""
    import face_recognition

    encodings = face_recognition.face_encodings(rgb)
    return encodings[0] if encodings else None
