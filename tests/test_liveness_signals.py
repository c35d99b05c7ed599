"""Blinks, head pose and challenges on landmark sequences; the live signals' flags (R5,
R7, R9). Synthetic faces: a few of face mesh's points, posed by a known rotation."""

from __future__ import annotations

import numpy as np
import pytest

from videoid.config import LiveConfig
from videoid.liveness.landmarks import LANDMARK_COUNT, FaceMeasures, head_pose, measure, rotation
from videoid.liveness.signals import (
    Blinks,
    ChallengeKind,
    ChallengeRun,
    FrameResult,
    LiveSignals,
    is_virtual_camera,
)

# face mesh indices -> a point on a face looking at the camera (x right, y down, z away)
FACE = {
    33: (-45, 0, 0), 133: (-15, 0, 0), 160: (-35, -4.5, 0), 158: (-25, -4.5, 0),
    153: (-25, 4.5, 0), 144: (-35, 4.5, 0),
    362: (15, 0, 0), 263: (45, 0, 0), 385: (25, -4.5, 0), 387: (35, -4.5, 0),
    373: (35, 4.5, 0), 380: (25, 4.5, 0),
    10: (0, -70, 10), 152: (0, 90, 10), 1: (0, 30, -30),
    13: (0, 55, -5), 14: (0, 57, -5), 78: (-20, 56, 0), 308: (20, 56, 0),
    61: (-25, 56, 0), 291: (25, 56, 0), 234: (-75, 20, 40), 454: (75, 20, 40),
}  # fmt: skip
UPPER_LIDS = (160, 158, 385, 387)
LOWER_LIDS = (153, 144, 373, 380)


def face(yaw=0.0, pitch=0.0, roll=0.0, eyes=1.0, mouth=0.0, smile=1.0) -> np.ndarray:
    """Landmarks of a posed face: ``eyes`` 1 open, 0 shut; ``mouth`` the lips' gap in
    units; ``smile`` widens the mouth."""
    pts = np.zeros((LANDMARK_COUNT, 3))
    for i, p in FACE.items():
        x, y, z = p
        if i in UPPER_LIDS:
            y = -4.5 * eyes
        if i in LOWER_LIDS:
            y = 4.5 * eyes
        if i == 14:
            y = 55 + 2 + mouth
        if i in (61, 291, 78, 308):
            x *= smile
        pts[i] = (x, y, z)
    r = rotation(yaw, pitch, roll)
    return (pts @ r.T) + np.array([320.0, 240.0, 0.0])


def measures(**kw: float) -> FaceMeasures:
    return measure(face(**kw))


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0, 0, 0), (25, 0, 0), (-30, 0, 0), (0, 15, 0), (0, -20, 0), (0, 0, 12), (20, 10, -5)],
)
def test_head_pose_recovers_the_rotation(yaw: float, pitch: float, roll: float) -> None:
    got = head_pose(face(yaw, pitch, roll))
    assert got[0] == pytest.approx(yaw, abs=1.0)
    assert got[1] == pytest.approx(pitch, abs=1.0)
    assert got[2] == pytest.approx(roll, abs=3.0)


def test_eye_and_mouth_measures() -> None:
    open_ = measures()
    assert open_.ear == pytest.approx(0.3, abs=0.01)
    assert measures(eyes=0.1).ear < 0.05
    assert measures(mouth=15).mouth_open > open_.mouth_open + 0.3
    assert measures(smile=1.2).smile > open_.smile * 1.15
    # turning the head does not close the eyes (the ratio is of the eye's own size)
    assert measures(yaw=25).ear == pytest.approx(open_.ear, abs=0.06)


def ears(pattern: str, start: float = 0.0, step: float = 0.2) -> list[tuple[float, float]]:
    """``o`` open, ``c`` closed, one sample each ``step`` seconds."""
    return [(start + i * step, 0.3 if c == "o" else 0.08) for i, c in enumerate(pattern)]


def test_blinks_counted_between_open_samples() -> None:
    blinks = Blinks()
    done = [blinks.feed(t, e) for t, e in ears("oooocooooocoooo")]
    assert done.count(True) == 2 and len(blinks.times) == 2


def test_eyes_shut_for_long_is_not_a_blink() -> None:
    blinks = Blinks()
    for t, e in ears("oooo" + "c" * 12 + "oooo"):
        blinks.feed(t, e)
    assert blinks.times == []


def test_blinks_adapt_to_narrow_eyes() -> None:
    """A customer whose open eyes measure 0.2 (not 0.3) still blinks."""
    blinks = Blinks()
    for i, c in enumerate("oooocoooocooo"):
        blinks.feed(i * 0.2, 0.2 if c == "o" else 0.09)
    assert len(blinks.times) == 2


def result(at: float, m: FaceMeasures | None = None, **kw) -> FrameResult:
    box = (0.3, 0.2, 0.3, 0.5) if m is not None else None
    defaults = {
        "width": 640,
        "height": 480,
        "faces": 1 if m else 0,
        "brightness": 120.0,
        "sharpness": 200.0,
    }
    return FrameResult(at=at, box=box, measures=m, **{**defaults, **kw})  # type: ignore[arg-type]


def run(kind: ChallengeKind, poses: list[dict], timeout: float = 8.0, before=None):
    baseline = [result(-0.4 + 0.2 * i, measures(**p)) for i, p in enumerate(before or [{}, {}])]
    challenge = ChallengeRun(kind, 0.0, timeout, baseline)
    outcome = None
    for i, pose in enumerate(poses):
        outcome = challenge.feed(
            result(0.2 * (i + 1), measures(**pose) if pose is not None else None)
        )
        if outcome:
            break
    return challenge, outcome


def test_turn_challenges_pass_when_the_head_turns_that_way() -> None:
    turning_left = [{"yaw": y} for y in (0, 5, 10, 17)]
    assert run(ChallengeKind.TURN_LEFT, turning_left)[1] == "passed"
    assert run(ChallengeKind.TURN_RIGHT, turning_left)[1] is None
    turning_right = [{"yaw": -y} for y in (0, 8, 16)]
    assert run(ChallengeKind.TURN_RIGHT, turning_right)[1] == "passed"
    # a customer sitting turned left who turns further left by too little does not pass
    _, outcome = run(ChallengeKind.TURN_LEFT, [{"yaw": 25}, {"yaw": 30}], before=[{"yaw": 20}])
    assert outcome is None
    # …and a customer sitting turned right passes by coming back to the middle and beyond
    back = [{"yaw": y} for y in (-20, -10, 0)]
    assert run(ChallengeKind.TURN_LEFT, back, before=[{"yaw": -20}])[1] == "passed"


def test_look_up_smile_blink_twice_and_document() -> None:
    assert run(ChallengeKind.LOOK_UP, [{"pitch": 5}, {"pitch": 12}])[1] == "passed"
    assert run(ChallengeKind.LOOK_UP, [{"pitch": -12}])[1] is None
    assert run(ChallengeKind.SMILE, [{"smile": 1.02}, {"smile": 1.15}])[1] == "passed"
    assert run(ChallengeKind.SMILE, [{"smile": 1.02}, {"mouth": 10}])[1] is None
    blinks = [{"eyes": e} for e in (1, 1, 0.2, 1, 1, 1, 0.1, 1)]
    challenge, outcome = run(ChallengeKind.BLINK_TWICE, blinks, before=[{}, {}, {}, {}])
    assert outcome == "passed" and challenge.evidence["blinks"] == 2
    one_blink = [{"eyes": e} for e in (1, 1, 0.2, 1, 1, 1, 1, 1)]
    assert run(ChallengeKind.BLINK_TWICE, one_blink, before=[{}, {}, {}, {}])[1] is None

    doc = ChallengeRun(ChallengeKind.DOCUMENT_CLOSE, 0.0, 8.0, [])
    assert doc.feed(result(0.5, measures(), document=0.05)) is None
    assert doc.feed(result(1.0, None, document=0.31)) == "passed"


def test_challenge_fails_at_its_deadline_and_says_why() -> None:
    challenge, outcome = run(ChallengeKind.TURN_LEFT, [{"yaw": 2}] * 5, timeout=0.5)
    assert outcome == "failed" and challenge.evidence["why"] == "not_done"
    absent = ChallengeRun(ChallengeKind.SMILE, 0.0, 1.0, [])
    assert absent.feed(result(0.5, None)) is None
    assert absent.expire(2.0) == "failed" and absent.evidence["why"] == "no_face"
    # decided once: later frames change nothing
    assert absent.feed(result(0.7, measures(smile=1.5))) == "failed"


def thumb(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 255, 32 * 24, dtype=np.uint8).tobytes()


def test_signals_flag_faces_quality_and_match() -> None:
    s = LiveSignals(LiveConfig(face_match_threshold=0.6))
    s.references = {"document": tuple([0.0] * 128), "selfie": tuple([0.0] * 127 + [1.0])}
    s.add(result(0.0, measures(), thumb=thumb(1), encoding=tuple([0.05] * 128)))
    view = s.to_json(0.0)
    assert view["faces"] == 1 and view["face"]["yaw"] == pytest.approx(0, abs=1)
    assert view["match"]["document"]["match"] is True  # distance 0.57
    assert view["match"]["selfie"]["match"] is False
    assert "face_mismatch_selfie" in view["flags"] and "face_mismatch_document" not in view["flags"]

    s.add(result(0.2, None, thumb=thumb(2), brightness=20, width=320, height=240))
    assert {"no_face", "too_dark", "low_resolution"} <= set(s.flags(0.2))
    s.add(result(0.4, measures(), faces=2, thumb=thumb(3), brightness=240, sharpness=3))
    assert {"several_faces", "too_bright", "blurry"} <= set(s.flags(0.4))


def test_signals_flag_frozen_and_looping_pictures() -> None:
    frozen = LiveSignals()
    for i in range(12):
        frozen.add(result(i * 0.2, measures(), thumb=thumb(7)))
    assert "frames_frozen" in frozen.flags(3.0)

    loop = LiveSignals()
    for i in range(30):
        loop.add(result(i * 0.2, measures(), thumb=thumb(i % 6)))  # six pictures, again
    assert "frames_repeat" in loop.flags(6.0) and "frames_frozen" not in loop.flags(6.0)

    alive = LiveSignals()
    for i in range(30):
        alive.add(result(i * 0.2, measures(yaw=i % 5), thumb=thumb(100 + i)))
    assert not {"frames_repeat", "frames_frozen"} & set(alive.flags(6.0))


def test_signals_flag_a_face_that_never_blinks_or_moves() -> None:
    s = LiveSignals(LiveConfig(no_blink_seconds=10))
    for i in range(60):
        s.add(result(i * 0.2, measures(), thumb=thumb(200 + i)))
    flags = s.flags(12.0)
    assert "no_blink" in flags and "no_motion" in flags
    lively = LiveSignals(LiveConfig(no_blink_seconds=10))
    for i in range(60):
        eyes = 0.1 if i % 15 == 7 else 1.0
        lively.add(result(i * 0.2, measures(yaw=(i % 7) - 3, eyes=eyes), thumb=thumb(300 + i)))
    assert not {"no_blink", "no_motion"} & set(lively.flags(12.0))


def test_injection_signals_from_received_frames() -> None:
    s = LiveSignals()
    for i in range(90):  # a file: 3000 ticks a frame, exactly
        s.frame_received(i / 30, i * 3000, 640, 480)
    assert "timestamps_too_regular" in s.flags(3.0)
    s.frame_received(3.1, 91 * 3000, 1280, 720)
    assert "resolution_changed" in s.flags(3.1)
    assert s.to_json(3.1)["quality"]["fps"] == pytest.approx(30, abs=1)

    camera = LiveSignals()
    rng = np.random.default_rng(1)
    pts = 0
    for i in range(90):  # a camera: its clock wanders by a few ticks
        pts += 3000 + int(rng.integers(-90, 90))
        camera.frame_received(i / 30, pts, 640, 480)
    assert not {"timestamps_too_regular", "resolution_changed"} & set(camera.flags(3.0))

    slow = LiveSignals()
    for i in range(40):
        slow.frame_received(i / 5, i * 18000 + (i % 3), 640, 480)
    assert "low_frame_rate" in slow.flags(8.0)


@pytest.mark.parametrize(
    ("label", "virtual"),
    [("OBS Virtual Camera", True), ("ManyCam Virtual Webcam", True), ("fake_device_0", True),
     ("FaceTime HD Camera (Built-in)", False), ("Integrated Camera (04f2:b6d9)", False),
     ("Logitech BRIO", False), ("/home/x/face.y4m", True), ("C:\\clips\\me.MP4", True)],
)  # fmt: skip
def test_virtual_camera_names(label: str, virtual: bool) -> None:
    assert is_virtual_camera(label) is virtual
