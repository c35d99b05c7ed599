"""A decoded picture as an RGB array, safe to make in any thread.

``av.VideoFrame.to_ndarray``/``to_image``/``reformat`` convert through a converter the
frame caches on itself (a libswscale context), which is not safe to use from two
threads at once. The server converts the same picture in two threads when an operator
takes a snapshot of the frame the live analysis is converting: libswscale then read
freed memory and the whole server died (a segmentation fault, twice in the soak of
issue 20.9). Each conversion here has a converter of its own.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from numpy.typing import NDArray


def frame_rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """``frame`` as a height x width x 3 array of RGB bytes. Blocking (a few
    milliseconds at 640x480): call it in a thread."""
    rgb: Any = VideoReformatter().reformat(frame, format="rgb24")
    return np.asarray(rgb.to_ndarray(), np.uint8)
