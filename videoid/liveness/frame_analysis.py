"""What a worker measures on one frame of the customer's live video.

Runs in the analysis pool (never on the event loop). mediapipe's face mesh (with iris
refinement) finds every face and its 478 landmarks in about 6 ms on a 640x480 frame;
from them come the eye, mouth and head-pose measures. Picture quality (brightness,
sharpness), a small grey thumbnail (to see frozen or repeating pictures), and the largest
document-shaped quadrilateral when asked. The face descriptor (dlib's, aligned as
face_recognition does; about 120 ms) is a separate call, for a pool of its own.

Everything returned is plain data: it crosses a process boundary.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from . import faces
from .landmarks import LANDMARK_COUNT, measure

THUMB_SIZE = (32, 24)
MAX_FACES = 3


@functools.cache
def _mesh() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,  # the pool serves many calls: no tracking across frames
        max_num_faces=MAX_FACES,
        refine_landmarks=True,
        min_detection_confidence=0.5,
    )


def landmarks(rgb: NDArray[Any]) -> list[NDArray[np.float64]]:
    """Each face's landmarks in pixels (x, y, z), largest face first."""
    h, w = rgb.shape[:2]
    found = _mesh().process(np.ascontiguousarray(rgb)).multi_face_landmarks or []
    out = []
    for face in found:
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], np.float64)
        if len(pts) >= LANDMARK_COUNT:
            out.append(pts)
    out.sort(key=lambda p: -(p[:, 0].max() - p[:, 0].min()))
    return out


def document_share(gray: NDArray[Any]) -> float:
    """The share of the picture covered by the largest document held near the camera: a
    quadrilateral whose sides' ratio is a document's (ID-1 card 1.59, passport page 1.42),
    found as a closed outline or, when the background's edges touch it, as two long
    horizontal and two long vertical edges framing such a shape."""
    small = cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(cv2.GaussianBlur(small, (5, 5), 0), 40, 120)
    return max(_outline_share(edges), _frame_share(edges))


def _document_ratio(a: float, b: float) -> bool:
    return 1.2 <= max(a, b) / max(min(a, b), 1.0) <= 1.85


def _outline_share(edges: NDArray[Any]) -> float:
    closed = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(closed, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    total = float(edges.shape[0] * edges.shape[1])
    best = 0.0
    for contour in contours:
        area = cv2.contourArea(contour)
        if area < 0.05 * total:
            continue
        quad = cv2.approxPolyDP(contour, 0.04 * cv2.arcLength(contour, True), True)
        if len(quad) != 4 or not cv2.isContourConvex(quad):
            continue
        (_, _), (a, b), _ = cv2.minAreaRect(quad)
        if _document_ratio(a, b):
            best = max(best, area / total)
    return best


def _frame_share(edges: NDArray[Any]) -> float:
    h, w = edges.shape
    lines = cv2.HoughLinesP(
        edges, 1, np.pi / 180, threshold=50, minLineLength=int(0.25 * h), maxLineGap=6
    )
    if lines is None:
        return 0.0
    across: list[tuple[float, float, float]] = []  # (y, x0, x1)
    upright: list[tuple[float, float, float]] = []  # (x, y0, y1)
    for x0, y0, x1, y1 in lines[:, 0, :].astype(float):
        if abs(y1 - y0) <= 0.18 * abs(x1 - x0):
            across.append(((y0 + y1) / 2, min(x0, x1), max(x0, x1)))
        elif abs(x1 - x0) <= 0.18 * abs(y1 - y0):
            upright.append(((x0 + x1) / 2, min(y0, y1), max(y0, y1)))
    best = 0.0
    for i, (top, t0, t1) in enumerate(across):
        for bottom, b0, b1 in across[i + 1 :]:
            y0, y1 = sorted((top, bottom))
            if y1 - y0 < 0.2 * h:
                continue
            for j, (left, l0, l1) in enumerate(upright):
                for right, r0, r1 in upright[j + 1 :]:
                    x0, x1 = sorted((left, right))
                    width, height = x1 - x0, y1 - y0
                    if width < 0.2 * w or not _document_ratio(width, height):
                        continue
                    # each side spans most of the shape, and the sides meet
                    if min(t1, x1) - max(t0, x0) < 0.5 * width:
                        continue
                    if min(b1, x1) - max(b0, x0) < 0.5 * width:
                        continue
                    if min(l1, y1) - max(l0, y0) < 0.5 * height:
                        continue
                    if min(r1, y1) - max(r0, y0) < 0.5 * height:
                        continue
                    best = max(best, width * height / (w * h))
    return best


@functools.cache
def _far_faces() -> Any:
    import mediapipe as mp

    # the full-range detector also finds small faces (someone in the background), which
    # face mesh's short-range detector misses; it costs about 7 ms, so it runs rarely
    return mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=0.5
    )


def warm() -> None:
    """Load the models (run once in each worker at start, so the first call waits not)."""
    _mesh()
    _far_faces()
    faces._models()


def analyse_frame(
    rgb: NDArray[Any],
    at: float,
    *,
    want_document: bool = False,
    want_far_faces: bool = False,
) -> dict[str, Any]:
    """Measure one frame. ``at`` is passed through (the frame's arrival time).
    ``want_far_faces`` also counts small, distant faces (a second person behind)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = landmarks(rgb)
    out: dict[str, Any] = {
        "at": at,
        "width": w,
        "height": h,
        "faces": len(found),
        "brightness": float(gray.mean()),
        "thumb": cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).tobytes(),
    }
    region = gray
    if found:
        pts = found[0]
        left, top = max(0.0, pts[:, 0].min()), max(0.0, pts[:, 1].min())
        right, bottom = min(float(w), pts[:, 0].max()), min(float(h), pts[:, 1].max())
        out["box"] = [left / w, top / h, (right - left) / w, (bottom - top) / h]
        out["measures"] = measure(pts).__dict__
        out["brightness"] = float(gray[int(top) : int(bottom), int(left) : int(right)].mean())
        region = gray[int(top) : int(bottom), int(left) : int(right)]
    if region.size:
        out["sharpness"] = float(cv2.Laplacian(region, cv2.CV_64F).var())
    # the signals' own cost: face mesh, measures, quality; in time and in CPU (all the
    # worker's threads: mediapipe runs its graph in its own)
    out["liveness_ms"] = (time.perf_counter() - started) * 1000
    out["liveness_cpu_ms"] = (time.process_time() - cpu_started) * 1000
    if want_document:
        out["document"] = document_share(gray)
    if want_far_faces:
        found_far = _far_faces().process(np.ascontiguousarray(rgb)).detections or []
        out["far_faces"] = len(found_far)
        out["faces"] = max(out["faces"], len(found_far))
    return out


def face_descriptor(rgb: NDArray[Any], box: tuple[float, float, float, float]) -> list[float]:
    """The descriptor of the face the mesh found at ``box`` (left, top, width, height as
    shares of the picture): about 120 ms, so it runs in a pool of its own, rarely."""
    h, w = rgb.shape[:2]
    left, top = int(box[0] * w), int(box[1] * h)
    right, bottom = int((box[0] + box[2]) * w), int((box[1] + box[3]) * h)
    return [float(v) for v in _encoding(rgb, (left, top, right, bottom))]


def _encoding(rgb: NDArray[Any], box: tuple[int, int, int, int]) -> NDArray[Any]:
    """The face descriptor, with dlib's own face box (found in the mesh's region) so
    the 5-point alignment sees the face as it was trained to."""
    left, top, right, bottom = box
    pad = (right - left) // 3
    h, w = rgb.shape[:2]
    x0, y0 = max(0, left - pad), max(0, top - pad)
    crop = np.ascontiguousarray(rgb[y0 : min(h, bottom + pad), x0 : min(w, right + pad)])
    found = faces.detect(crop, side=max(crop.shape[:2]), upsample=0)
    if found:
        fl, ft, fr, fb = found[0].box
        face = faces.Face((fl + x0, ft + y0, fr + x0, fb + y0), found[0].landmarks, 1.0)
    else:
        face = faces.Face(box, np.zeros((68, 2), np.float32), 0.0)
    return faces.encode(rgb, face)


def reference_encoding(data: bytes, max_bytes: int, max_pixels: int) -> list[float] | None:
    """The face descriptor of a stored photo (document portrait, selfie), to compare the
    live face with. None when it shows no face."""
    from ..documents.images import load_image

    image = load_image(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=32)
    face = faces.main_face(image.rgb)
    if face is None:
        return None
    return [float(v) for v in faces.encode(image.rgb, face)]
