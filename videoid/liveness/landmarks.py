"""Measures taken from one face's landmarks: eyes, mouth, head pose. Pure functions.

Landmarks are mediapipe face mesh's 478 points (468 + 10 iris points with
``refine_landmarks``) in pixels: ``x`` and ``y`` in the image, ``z`` depth on the scale
of ``x`` (smaller is nearer the camera). Only the indices named here are read, so tests
can build faces of a few points.

Directions are the customer's own: "left" is the customer's left, which is the
image's right in an unmirrored camera picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float64]

# the eye contour points of the eye aspect ratio (Soukupová and Čech, 2016): corner,
# two upper lid points, the other corner, two lower lid points facing the upper ones
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (362, 385, 387, 263, 373, 380)
MOUTH_INNER = (13, 14)  # upper and lower inner lip, middle
MOUTH_CORNERS = (78, 308)  # inner corners
MOUTH_OUTER_CORNERS = (61, 291)
EYE_OUTER = (33, 263)  # the customer's right and left outer eye corners
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
CHEEKS = (234, 454)  # the face's outline at the ears
LANDMARK_COUNT = 478


@dataclass(frozen=True)
class FaceMeasures:
    ear: float
    """Eye aspect ratio, both eyes averaged: about 0.25-0.35 open, under 0.15 closed."""
    mouth_open: float
    """Inner lip gap over mouth width: 0 closed, about 0.3+ wide open."""
    smile: float
    """Mouth width over face width (grows when smiling; compare with the customer's own)."""
    yaw: float
    """Degrees; positive when the customer turns their head to their left."""
    pitch: float
    """Degrees; positive when the customer looks up."""
    roll: float
    """Degrees; positive when the head tilts towards the customer's left shoulder."""

    def as_dict(self) -> dict[str, float]:
        return {
            "ear": round(self.ear, 3),
            "mouth_open": round(self.mouth_open, 3),
            "smile": round(self.smile, 3),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
        }


def _dist(points: Points, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]))


def eye_aspect_ratio(points: Points, eye: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = eye
    width = _dist(points, p1, p4)
    if width <= 0:
        return 0.0
    return (_dist(points, p2, p6) + _dist(points, p3, p5)) / (2.0 * width)


def head_pose(points: Points) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees from the face's own axes: across the eye
    corners, and from chin to forehead (made perpendicular to the first)."""
    across = points[EYE_OUTER[1]] - points[EYE_OUTER[0]]
    up = points[FOREHEAD] - points[CHIN]
    x = across / (np.linalg.norm(across) or 1.0)
    up = up - np.dot(up, x) * x
    y = up / (np.linalg.norm(up) or 1.0)
    # image axes: x right, y down, z away from the camera; "up" has negative y
    forward = np.cross(x, y)  # towards the camera when the face looks straight at it
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2])))
    roll = math.degrees(math.atan2(x[1], x[0]))
    return yaw, pitch, roll


def measure(points: Points) -> FaceMeasures:
    ear = (eye_aspect_ratio(points, RIGHT_EYE) + eye_aspect_ratio(points, LEFT_EYE)) / 2
    mouth_width = _dist(points, *MOUTH_CORNERS)
    mouth_open = _dist(points, *MOUTH_INNER) / mouth_width if mouth_width > 0 else 0.0
    face_width = _dist(points, *CHEEKS)
    smile = _dist(points, *MOUTH_OUTER_CORNERS) / face_width if face_width > 0 else 0.0
    yaw, pitch, roll = head_pose(points)
    return FaceMeasures(ear, mouth_open, smile, yaw, pitch, roll)


def rotation(yaw: float, pitch: float, roll: float) -> Points:
    """The rotation that turns a face looking at the camera to the given pose (degrees,
    same conventions as :func:`head_pose`). For tests and synthetic faces."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    # yaw about the image's vertical axis, pitch about its horizontal one, roll about
    # the viewing axis; y points down and z away from the camera
    ry = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), math.sin(b)], [0, -math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return np.asarray(ry @ rx @ rz, dtype=np.float64)
