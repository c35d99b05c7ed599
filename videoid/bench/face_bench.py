"""``videoid bench face-match``: our face match against ``face_recognition`` with its
defaults, on the same photos, pinned to one core.

The photos: the face_recognition 1.3.0 test images (one person three times plus two
partial faces, another person once) and, for each person, a phone photo of a
synthetic identity card with that person's portrait printed on it. Prints the median
and p95 time per photo (decode, detect, encode) for each, and every pair's distance
and decision from both, with the number of pairs where the decisions differ.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..liveness import faces
from .documents import make_document, phone_photo, portrait_from, render

PEOPLE = {
    "obama.jpg": "A",
    "obama2.jpg": "A",
    "obama3.jpg": "A",
    "obama_partial_face.jpg": "A",
    "obama_partial_face2.jpg": "A",
    "biden.jpg": "B",
}


def _photos(photos: Path, data_dir: Path) -> dict[str, tuple[bytes, str]]:
    out = {name: ((photos / name).read_bytes(), who) for name, who in PEOPLE.items()}
    cache = data_dir / "bench" / "faces"
    cache.mkdir(parents=True, exist_ok=True)
    for source, who in (("obama.jpg", "A"), ("biden.jpg", "B")):
        path = cache / f"card-{source}"
        if not path.exists():
            rng = random.Random(source)
            doc = make_document(rng, "TD1")
            _, front = render(doc, portrait_from(photos / source), rng)
            assert front is not None
            path.write_bytes(phone_photo(front, rng))
        out[path.name] = (path.read_bytes(), who)
    return out


def _decode(data: bytes) -> NDArray[Any]:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def ours(data: bytes) -> NDArray[Any] | None:
    rgb = _decode(data)
    face = faces.main_face(rgb)
    return faces.encode(rgb, face) if face else None


def reference(data: bytes) -> NDArray[Any] | None:
    return faces.reference_encoding(_decode(data))


def run(photos: Path, data_dir: Path, rounds: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    images = _photos(photos, data_dir)
    ours(next(iter(images.values()))[0])  # load the models outside the timings
    encodings: dict[str, dict[str, NDArray[Any] | None]] = {"videoid": {}, "face_recognition": {}}
    times: dict[str, list[float]] = {"videoid": [], "face_recognition": []}
    for _ in range(rounds):
        for name, (data, _) in images.items():
            for label, fn in (("videoid", ours), ("face_recognition", reference)):
                start = time.perf_counter()
                encodings[label][name] = fn(data)
                times[label].append(time.perf_counter() - start)
    print(f"{len(images)} photos x {rounds} rounds, pinned to one core; time per photo")
    for label, t in times.items():
        t = sorted(t)
        print(
            f"{label:<17} median {1000 * statistics.median(t):7.1f} ms"
            f"  p95 {1000 * t[min(len(t) - 1, int(len(t) * 0.95))]:7.1f} ms"
        )
    ratio = statistics.median(times["face_recognition"]) / statistics.median(times["videoid"])
    print(f"speed-up (median): {ratio:.1f}x")
    print(f"\n{'pair':<52} {'same':>5} {'ours':>7} {'ref':>7}  decisions")
    differ = wrong = 0
    for a, b in itertools.combinations(images, 2):
        same = images[a][1] == images[b][1]
        ea, eb = encodings["videoid"][a], encodings["videoid"][b]
        ra, rb = encodings["face_recognition"][a], encodings["face_recognition"][b]
        if ea is None or eb is None or ra is None or rb is None:
            print(f"{a + ' / ' + b:<52} no face found")
            differ += 1
            continue
        d_ours, d_ref = faces.distance(ea, eb), faces.distance(ra, rb)
        m_ours, m_ref = d_ours < faces.THRESHOLD, d_ref < faces.THRESHOLD
        differ += m_ours != m_ref
        wrong += m_ours != same
        print(
            f"{a + ' / ' + b:<52} {'yes' if same else 'no':>5} {d_ours:7.3f} {d_ref:7.3f}"
            f"  {'match' if m_ours else 'no match'}{'' if m_ours == m_ref else '  ≠ reference'}"
        )
    print(
        f"\npairs where our decision differs from the reference: {differ}; wrong decisions: {wrong}"
    )
