"""A pre-encoded test clip for the load generator: a face video whose frames each carry
their index as a barcode, encoded once as VP8 (frame 0 the only keyframe) plus Opus tone
packets. Sending it costs the generator no encoding; a keyframe request restarts it at
frame 0, so that what is sent always decodes."""

from __future__ import annotations

import fractions
import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..bots.face_video import make_face_video

FPS = 15
WIDTH, HEIGHT = 640, 480
BITS = 10
BAR_W, BAR_H = WIDTH // BITS, 32
BITRATE = 500_000


def draw_barcode(y_plane: np.ndarray[Any, np.dtype[np.uint8]], index: int) -> None:
    for bit in range(BITS):
        value = 255 if index >> bit & 1 else 0
        y_plane[:BAR_H, bit * BAR_W : (bit + 1) * BAR_W] = value


def read_barcode(frame: av.VideoFrame) -> int:
    """The index drawn by :func:`draw_barcode` on a decoded frame."""
    plane = frame.planes[0]
    y = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
    scale_x = frame.width / WIDTH
    scale_y = frame.height / HEIGHT
    row = int(BAR_H / 2 * scale_y)
    index = 0
    for bit in range(BITS):
        x = int((bit + 0.5) * BAR_W * scale_x)
        if y[row - 2 : row + 3, x - 4 : x + 5].mean() > 128:
            index |= 1 << bit
    return index


@dataclass(frozen=True)
class Clip:
    video: tuple[bytes, ...]
    """The VP8 stream: frame i is the encoding of picture i; frame 0 is a keyframe."""
    audio: tuple[bytes, ...]
    """20 ms Opus packets of a tone."""

    def index_by_hash(self) -> dict[bytes, int]:
        return {frame_hash(d): i for i, d in enumerate(self.video)}


def frame_hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def _encoder(gop: int) -> av.VideoCodecContext:
    codec = av.VideoCodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate = BITRATE
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = gop
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "minrate": str(BITRATE),
        "maxrate": str(BITRATE),
        "bufsize": str(BITRATE),
    }
    return codec


def build_clip(photo: Path, cache_dir: Path, seconds: int = 10) -> Clip:
    """Encode (or load from ``cache_dir``) a clip of ``seconds`` seconds."""
    cache = cache_dir / f"clip2-{photo.stem}-{seconds}s.pickle"
    if cache.exists():
        clip = pickle.loads(cache.read_bytes())
        if isinstance(clip, Clip):
            return clip
    cache_dir.mkdir(parents=True, exist_ok=True)
    y4m = make_face_video(
        photo,
        cache_dir / f"{photo.stem}-{seconds}s.y4m",
        seconds=seconds,
        fps=FPS,
        width=WIDTH,
        height=HEIGHT,
    )
    encoder = _encoder(gop=10_000)
    video: list[bytes] = []
    with av.open(str(y4m)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            plane = frame.planes[0]
            y = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size).copy()
            draw_barcode(y, i)
            frame.planes[0].update(y.tobytes())
            frame.pts = i
            # a raw decoder marks every picture "I", which libvpx takes as a forced keyframe
            frame.pict_type = av.video.frame.PictureType.NONE
            video.append(b"".join(bytes(p) for p in encoder.encode(frame)))
    if any(not d for d in video) or video[0][0] & 1:
        raise RuntimeError("the VP8 encoder held frames back; the clip is unusable")
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "mono", "s16"
    opus.bit_rate = 32000
    audio: list[bytes] = []
    samples = 960
    for i in range(50):
        t = (np.arange(samples) + i * samples) / 48000
        pcm = (np.sin(2 * math.pi * 440 * t) * 3000).astype(np.int16).reshape(1, -1)
        tone = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        tone.sample_rate, tone.pts = 48000, i * samples
        audio.extend(bytes(p) for p in opus.encode(tone))
    clip = Clip(tuple(video), tuple(audio))
    cache.write_bytes(pickle.dumps(clip))
    return clip
