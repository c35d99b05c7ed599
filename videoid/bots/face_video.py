"""Make a short video of a real face from still photos (a slow pan and zoom on each, one
after the other), as Y4M (what Chromium's fake camera reads) or any container PyAV
writes. Several photos of one person in different poses make a head that turns; a
still picture (``still=True``) makes a stream of identical frames, as a replayed photo
would give."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray


def _read(photo: str | Path) -> NDArray[np.uint8]:
    with av.open(str(photo)) as container:
        return np.asarray(next(container.decode(video=0)).to_ndarray(format="rgb24"), np.uint8)


def make_face_video(
    photo: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    seconds: float = 4.0,
    fps: int = 15,
    width: int = 640,
    height: int = 480,
    still: bool = False,
) -> Path:
    """Write ``out`` (``.y4m`` for raw I420, else encoded by extension) and return it.
    With several photos, each fills an equal share of ``seconds``."""
    photos = [photo] if isinstance(photo, str | Path) else list(photo)
    images = [_read(p) for p in photos]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    y4m = out.suffix == ".y4m"
    formats = {".y4m": "yuv4mpegpipe", ".webm": "webm", ".mkv": "matroska"}
    if out.suffix not in formats:
        raise ValueError(f"unsupported video file type {out.suffix!r} (use {', '.join(formats)})")
    with av.open(str(tmp), "w", format=formats[out.suffix]) as container:
        stream = container.add_stream("rawvideo" if y4m else "libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frames = max(1, int(seconds * fps))
        per_photo = max(1, frames // len(images))
        for i in range(frames):
            image = images[min(i // per_photo, len(images) - 1)]
            h, w, _ = image.shape
            # crop to the output aspect, then pan and zoom inside it
            aspect = width / height
            cw, ch = (w, int(w / aspect)) if w / h < aspect else (int(h * aspect), h)
            t = 0.0 if still else (i % per_photo) / max(1, per_photo - 1)
            zoom = 1.0 - 0.12 * np.sin(np.pi * t)
            zw, zh = int(cw * zoom), int(ch * zoom)
            x = int((w - zw) * (0.5 + 0.3 * np.sin(2 * np.pi * t)))
            y = int((h - zh) * 0.15)  # portraits: keep the face, which sits high
            crop = np.ascontiguousarray(image[y : y + zh, x : x + zw])
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
                width=width, height=height, format="yuv420p"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(out)
    return out
