"""A picture converted in several threads at once (the live analysis and a snapshot
take the same latest frame): each conversion has its own converter. Through the
frame's own cached one (``to_ndarray``), libswscale crashes the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import av
import numpy as np

from videoid.media.frame_rgb import frame_rgb

from .conftest import ROOT

PROGRAM = textwrap.dedent(
    """
    import sys, threading
    import av, numpy as np
    from videoid.media.frame_rgb import frame_rgb

    picture = np.random.default_rng(1).integers(0, 255, (480, 640, 3)).astype(np.uint8)
    convert = frame_rgb if sys.argv[1] == "frame_rgb" else (
        lambda frame: frame.to_ndarray(format="rgb24")
    )
    for _ in range(300):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        threads = [
            threading.Thread(target=lambda: [convert(frame) for _ in range(5)])
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print("done")
    """
)


def test_the_same_frame_converted_in_three_threads_at_once() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, "frame_rgb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "done", (out.returncode, out.stderr)


def test_the_same_pixels_as_pyav_gives() -> None:
    picture = np.random.default_rng(2).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    rgb = frame_rgb(frame)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, frame.to_ndarray(format="rgb24"))
