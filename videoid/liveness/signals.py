"""The live signals of one call, from the analysed frames of the customer's video.

Pure and clock-free: :class:`LiveSignals` is fed what the workers measured on sampled
frames (:class:`FrameResult`) and what every received frame says of itself (size,
timestamp, arrival), and answers with the signals the operator sees: faces, face
match, blinks and head pose, capture quality (R5) and signs of injection or replay
(R7). Signals, never verdicts: flags name what looks wrong; the operator decides.

:class:`ChallengeRun` verifies one challenge (turn the head, look up, blink twice,
smile, bring the document close) over the results that follow it.
"""

from __future__ import annotations

import enum
import re
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import LiveConfig
from .landmarks import FaceMeasures

VIRTUAL_CAMERA_WORDS = (
    "virtual",
    "obs",
    "manycam",
    "snap camera",
    "xsplit",
    "v4l2loopback",
    "dummy",
    "fake",
    "camtwist",
    "vcam",
    "e2esoft",
    "splitcam",
    "youcam",
    "droidcam",
    "epoccam",
    "iriun",
    "mmhmm",
    "nvidia broadcast",
)
"""Words in a camera's label that name software cameras, which can play any video."""


@dataclass(frozen=True)
class FrameResult:
    """What a worker measured on one sampled frame."""

    at: float
    """When the frame arrived (seconds, the caller's clock)."""
    width: int
    height: int
    faces: int
    box: tuple[float, float, float, float] | None = None
    """The main face: left, top, width, height as shares of the picture."""
    measures: FaceMeasures | None = None
    brightness: float = 0.0
    sharpness: float = 0.0
    thumb: bytes = b""
    """The picture in grey, 32x24: to see frozen and repeating pictures."""
    document: float = 0.0
    """The share of the picture covered by the largest document-shaped quadrilateral."""
    encoding: tuple[float, ...] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameResult:
        m = d.get("measures")
        box = d.get("box")
        enc = d.get("encoding")
        return cls(
            at=float(d["at"]),
            width=int(d["width"]),
            height=int(d["height"]),
            faces=int(d["faces"]),
            box=tuple(box) if box else None,
            measures=FaceMeasures(**m) if m else None,
            brightness=float(d.get("brightness", 0.0)),
            sharpness=float(d.get("sharpness", 0.0)),
            thumb=bytes(d.get("thumb", b"")),
            document=float(d.get("document", 0.0)),
            encoding=tuple(enc) if enc else None,
        )


class Blinks:
    """Counts blinks in a sequence of eye aspect ratios sampled a few times a second.

    The open level is the customer's own (a high percentile of recent values). The eyes
    count as closed under ``closed_share`` of it and open again only above
    ``open_share`` (so a ratio hovering near one line is not a string of blinks); a
    closure shorter than ``max_seconds`` between open samples is a blink. Sparse
    sampling sees only some blinks: the count is a lower bound."""

    def __init__(
        self,
        closed_share: float = 0.6,
        open_share: float = 0.85,
        max_seconds: float = 1.0,
        window: int = 60,
    ) -> None:
        self._closed_share, self._open_share = closed_share, open_share
        self._max_seconds = max_seconds
        self._recent: deque[float] = deque(maxlen=window)
        self._closed_since: float | None = None
        self._was_open = False
        self.times: list[float] = []

    def open_level(self) -> float | None:
        if len(self._recent) < 3:
            return None
        ordered = sorted(self._recent)
        return ordered[int(0.8 * (len(ordered) - 1))]

    def feed(self, at: float, ear: float) -> bool:
        """Add one sample; True when it completes a blink."""
        level = self.open_level()
        self._recent.append(ear)
        if level is None:
            return False
        if ear < self._closed_share * level:
            if self._closed_since is None:
                self._closed_since = at
            return False
        if ear < self._open_share * level:
            return False  # between the lines: neither closing nor open again
        closed_since, self._closed_since = self._closed_since, None
        was_open, self._was_open = self._was_open, True
        if closed_since is not None and was_open and at - closed_since <= self._max_seconds:
            self.times.append(at)
            return True
        return False


class ChallengeKind(enum.StrEnum):
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    LOOK_UP = "look_up"
    BLINK_TWICE = "blink_twice"
    SMILE = "smile"
    DOCUMENT_CLOSE = "document_close"


TURN_DEGREES = 15.0
LOOK_UP_DEGREES = 10.0
SMILE_GAIN = 1.08
DOCUMENT_SHARE = 0.2


class ChallengeRun:
    """One challenge, from the moment the customer is shown it to pass or fail.

    It compares with the customer's pose and expression when it started (the last
    results before it), so a customer already sitting turned does not pass at once: a
    turn passes when the head moves far enough that way from where it has been."""

    def __init__(
        self,
        kind: ChallengeKind,
        started: float,
        timeout: float,
        baseline: list[FrameResult],
    ) -> None:
        self.kind = kind
        self.started = started
        self.deadline = started + timeout
        self.result: str | None = None
        """``passed`` or ``failed`` once decided."""
        self.evidence: dict[str, Any] = {}
        faces = [r.measures for r in baseline if r.measures is not None]
        start = {
            k: statistics.median(getattr(m, k) for m in faces) if faces else None
            for k in ("yaw", "pitch")
        }
        self._low = {k: v for k, v in start.items() if v is not None}
        self._high = dict(self._low)
        self._smile = statistics.median(m.smile for m in faces) if faces else None
        self._blinks = Blinks()
        for r in baseline:
            if r.measures is not None:
                self._blinks.feed(r.at, r.measures.ear)
        self._blinks.times.clear()
        self._seen_face = False

    def feed(self, result: FrameResult) -> str | None:
        """Add a result that arrived after the start; returns the result once decided."""
        if self.result is not None or result.at < self.started:
            return self.result
        if result.at > self.deadline:
            return self.expire(result.at)
        m = result.measures
        kind = self.kind
        if kind is ChallengeKind.DOCUMENT_CLOSE:
            if result.document >= DOCUMENT_SHARE:
                return self._decide("passed", result.at, document_share=round(result.document, 3))
            return None
        if m is None:
            return None
        self._seen_face = True
        if not self._low:  # no baseline: the first face seen is the starting pose
            self._low = {"yaw": m.yaw, "pitch": m.pitch}
            self._high = dict(self._low)
        # a turn is a movement: from the lowest (highest) yaw seen since the start
        self._low = {k: min(v, getattr(m, k)) for k, v in self._low.items()}
        self._high = {k: max(v, getattr(m, k)) for k, v in self._high.items()}
        if kind is ChallengeKind.TURN_LEFT and m.yaw - self._low["yaw"] >= TURN_DEGREES:
            return self._decide("passed", result.at, yaw=round(m.yaw - self._low["yaw"], 1))
        if kind is ChallengeKind.TURN_RIGHT and self._high["yaw"] - m.yaw >= TURN_DEGREES:
            return self._decide("passed", result.at, yaw=round(m.yaw - self._high["yaw"], 1))
        if kind is ChallengeKind.LOOK_UP and m.pitch - self._low["pitch"] >= LOOK_UP_DEGREES:
            return self._decide("passed", result.at, pitch=round(m.pitch - self._low["pitch"], 1))
        if kind is ChallengeKind.BLINK_TWICE:
            self._blinks.feed(result.at, m.ear)
            if len(self._blinks.times) >= 2:
                return self._decide("passed", result.at, blinks=len(self._blinks.times))
        if kind is ChallengeKind.SMILE:
            if self._smile is None:
                self._smile = m.smile  # no baseline: the first face seen is the neutral one
            elif m.smile >= self._smile * SMILE_GAIN:
                return self._decide("passed", result.at, smile_gain=round(m.smile / self._smile, 3))
        return None

    def expire(self, now: float) -> str | None:
        """Fail the challenge if its time is up."""
        if self.result is None and now > self.deadline:
            seen = self._seen_face or self.kind is ChallengeKind.DOCUMENT_CLOSE
            return self._decide("failed", now, why="not_done" if seen else "no_face")
        return self.result

    def _decide(self, result: str, at: float, **evidence: Any) -> str:
        self.result = result
        self.evidence = {"seconds": round(at - self.started, 2), **evidence}
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "result": self.result,
            "started": self.started,
            "deadline": self.deadline,
            **({"evidence": self.evidence} if self.evidence else {}),
        }


@dataclass
class _FrameStats:
    """Every received frame, not only the analysed ones."""

    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=90))
    pts_steps: deque[int] = field(default_factory=lambda: deque(maxlen=90))
    last_pts: int | None = None
    size: tuple[int, int] | None = None
    size_changes: list[dict[str, Any]] = field(default_factory=list)
    fps_history: deque[float] = field(default_factory=lambda: deque(maxlen=30))
    fps_jumps: int = 0
    frames: int = 0


class LiveSignals:
    """The signals of one call. Feed it; read :meth:`to_json`."""

    def __init__(self, config: LiveConfig | None = None) -> None:
        self.limits = config or LiveConfig()
        """The quality limits (R5), the match threshold and the no-blink window."""
        self.match_threshold = self.limits.face_match_threshold
        self.no_blink_seconds = self.limits.no_blink_seconds
        self.camera_label: str | None = None
        self.references: dict[str, tuple[float, ...]] = {}
        """Face descriptors to compare the live face with: ``document``, ``selfie``."""
        self.match: dict[str, float] = {}
        """The latest distance to each reference."""
        self.results: deque[FrameResult] = deque(maxlen=150)
        self.blinks = Blinks()
        self._stats = _FrameStats()
        self._first_face: float | None = None
        self._thumbs: deque[NDArray[np.int16]] = deque(maxlen=120)
        self.repeats = 0
        self.frozen = 0
        self.analysed = 0

    # -- feeding ----------------------------------------------------------------------

    def frame_received(self, at: float, pts: int | None, width: int, height: int) -> None:
        """Every decoded frame (cheap): its arrival, RTP timestamp and size."""
        s = self._stats
        s.frames += 1
        s.arrivals.append(at)
        if pts is not None and s.last_pts is not None and pts > s.last_pts:
            s.pts_steps.append(pts - s.last_pts)
        s.last_pts = pts
        if s.size is not None and s.size != (width, height):
            s.size_changes.append({"at": at, "from": list(s.size), "to": [width, height]})
        s.size = (width, height)
        if s.frames % 30 == 0:
            fps = self.fps()
            if fps is not None:
                if s.fps_history and abs(fps - s.fps_history[-1]) > max(
                    8.0, 0.4 * s.fps_history[-1]
                ):
                    s.fps_jumps += 1
                s.fps_history.append(fps)

    def add(self, result: FrameResult) -> None:
        """One analysed frame."""
        self.analysed += 1
        self.results.append(result)
        if result.measures is not None:
            if self._first_face is None:
                self._first_face = result.at
            self.blinks.feed(result.at, result.measures.ear)
        if result.thumb:
            thumb = np.frombuffer(result.thumb, np.uint8).astype(np.int16)
            earlier = list(self._thumbs)
            if earlier and _change(earlier[-1], thumb) < SAME_PICTURE:
                self.frozen += 1
            elif any(_change(old, thumb) < SAME_PICTURE for old in earlier[:-3]):
                self.repeats += 1  # an earlier picture again, after others: a loop
            self._thumbs.append(thumb)
        if result.encoding is not None:
            self.matched(result.encoding)

    def matched(self, encoding: tuple[float, ...]) -> None:
        """The live face's descriptor: compare it with each reference."""
        for name, reference in self.references.items():
            self.match[name] = _distance(encoding, reference)

    # -- reading ----------------------------------------------------------------------

    def fps(self) -> float | None:
        arrivals = self._stats.arrivals
        if len(arrivals) < 10 or arrivals[-1] <= arrivals[0]:
            return None
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def timestamps_regular(self) -> bool:
        """True when the sender's frame timestamps step by exactly the same amount for
        many frames: a file or a generator, not a camera (whose clock wanders)."""
        steps = self._stats.pts_steps
        return len(steps) >= 60 and len(set(steps)) == 1

    def flags(self, now: float) -> list[str]:
        out: list[str] = []
        lim = self.limits
        latest = self.results[-1] if self.results else None
        if latest is not None:
            # the far-face count comes once a second: several faces in the last 1.5 s
            recent_faces = max(r.faces for r in self.results if r.at >= latest.at - 1.5)
            if latest.faces == 0:
                out.append("no_face")
            elif recent_faces > 1:
                out.append("several_faces")
            if latest.box is not None and latest.box[2] < lim.min_face_share:
                out.append("face_small")
            if latest.brightness < lim.min_brightness:
                out.append("too_dark")
            elif latest.brightness > lim.max_brightness:
                out.append("too_bright")
            if latest.faces and latest.sharpness < lim.min_sharpness:
                out.append("blurry")
            if latest.width < lim.min_width or latest.height < lim.min_height:
                out.append("low_resolution")
        fps = self.fps()
        if fps is not None and fps < lim.min_fps:
            out.append("low_frame_rate")
        if self.camera_label is not None and is_virtual_camera(self.camera_label):
            out.append("virtual_camera")
        if self._stats.size_changes:
            out.append("resolution_changed")
        if self._stats.fps_jumps:
            out.append("frame_rate_changed")
        if self.timestamps_regular():
            out.append("timestamps_too_regular")
        if self.analysed >= 10 and self.frozen >= 0.5 * self.analysed:
            out.append("frames_frozen")
        if self.repeats >= 3:
            out.append("frames_repeat")
        with_face = [r for r in self.results if r.measures is not None]
        if (
            self._first_face is not None
            and now - self._first_face >= self.no_blink_seconds
            and not any(t >= now - self.no_blink_seconds for t in self.blinks.times)
        ):
            out.append("no_blink")
        if len(with_face) >= 10 and _still(with_face[-20:]):
            out.append("no_motion")
        for name, d in self.match.items():
            if d >= self.match_threshold:
                out.append(f"face_mismatch_{name}")
        return out

    def to_json(self, now: float) -> dict[str, Any]:
        latest = self.results[-1] if self.results else None
        fps = self.fps()
        s = self._stats
        steps = list(s.pts_steps)
        return {
            "at": latest.at if latest else None,
            "faces": latest.faces if latest else None,
            "face": (
                {"box": [round(v, 3) for v in latest.box], **latest.measures.as_dict()}
                if latest is not None and latest.box is not None and latest.measures is not None
                else None
            ),
            "blinks": len(self.blinks.times),
            "mouth_moving": _mouth_moving(self.results, now),
            "match": {
                k: {"distance": round(v, 3), "match": v < self.match_threshold}
                for k, v in self.match.items()
            },
            "quality": {
                "brightness": round(latest.brightness, 1) if latest else None,
                "sharpness": round(latest.sharpness, 1) if latest else None,
                "width": s.size[0] if s.size else None,
                "height": s.size[1] if s.size else None,
                "fps": round(fps, 1) if fps is not None else None,
            },
            "injection": {
                "camera_label": self.camera_label,
                "size_changes": len(s.size_changes),
                "fps_jumps": s.fps_jumps,
                "timestamp_jitter": round(statistics.pstdev(steps), 1) if len(steps) > 1 else None,
                "frozen": self.frozen,
                "repeats": self.repeats,
            },
            "flags": self.flags(now),
        }


VIDEO_FILE = re.compile(r"\.(y4m|mjpe?g|mp4|m4v|webm|mkv|avi|mov)\b", re.IGNORECASE)


def is_virtual_camera(label: str) -> bool:
    """A software camera by its name, or a video file standing in for one (browsers
    name a file-fed camera by the file's path)."""
    words = label.lower()
    return any(w in words for w in VIRTUAL_CAMERA_WORDS) or bool(VIDEO_FILE.search(label))


SAME_PICTURE = 0.35
"""Mean absolute difference (grey levels) of two 32x24 thumbnails under which they are
the same picture: a camera's noise and a living face's movement stay above it."""


def _change(a: NDArray[np.int16], b: NDArray[np.int16]) -> float:
    return float(np.abs(a - b).mean()) if a.shape == b.shape else 255.0


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def _mouth_moving(results: deque[FrameResult], now: float) -> bool:
    """The lips move (as when speaking) over the last two seconds."""
    recent = [r.measures.mouth_open for r in results if r.measures and r.at >= now - 2.0]
    return len(recent) >= 3 and max(recent) - min(recent) > 0.08


def _still(results: list[FrameResult]) -> bool:
    """No movement worth the name: the pose stays within a degree and the eyes and mouth
    do not change (a photo held up, a frozen stream)."""
    ms = [r.measures for r in results if r.measures is not None]
    spread = max(
        statistics.pstdev(m.yaw for m in ms),
        statistics.pstdev(m.pitch for m in ms),
        statistics.pstdev(m.roll for m in ms),
    )
    ears = statistics.pstdev(m.ear for m in ms)
    mouths = statistics.pstdev(m.mouth_open for m in ms)
    return spread < 0.7 and ears < 0.01 and mouths < 0.01
