"""What arrives as an image, checked before anything else looks at it.

* The type is sniffed from the content, never taken from the name or the declared
  type: JPEG or PNG, nothing else (a PDF renamed ``.jpg`` is refused).
* Size limits in bytes and in pixels, checked from the header before the pixels are
  decoded (no decompression bombs), and a truncated file is refused.
* EXIF orientation is applied, then the image is encoded again as JPEG with no
  metadata at all (no GPS position, no camera serial number, no thumbnail).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ValidationError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageRejected(ValidationError):
    """The file is not an image we can accept."""

    code = "image_rejected"
    status = 422


@dataclass(frozen=True)
class CleanImage:
    rgb: NDArray[Any]
    """(height, width, 3) uint8, upright."""
    jpeg: bytes
    """The image re-encoded, without metadata: what gets stored."""
    source_type: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sniff(data: bytes) -> str | None:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def load_image(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int = 320) -> CleanImage:
    """Check and decode an uploaded photo. Raises :class:`ImageRejected` with one of
    the codes ``file_empty``, ``file_too_large``, ``unsupported_file_type``,
    ``image_too_large``, ``image_unreadable`` or ``image_too_small``."""
    if not data:
        raise ImageRejected("the file is empty", code="file_empty")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"the file is larger than {max_bytes // 1_000_000} MB", code="file_too_large"
        )
    kind = sniff(data)
    if kind is None:
        raise ImageRejected(
            "only photos in JPEG or PNG format are accepted", code="unsupported_file_type"
        )
    # face_recognition sets Pillow's process-wide LOAD_TRUNCATED_IMAGES when imported
    # (it pads a truncated file silently): a damaged upload must fail here, always.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG"])
            w, h = image.size
            if w * h > max_pixels:
                raise ImageRejected(
                    f"the image has too many pixels ({w} x {h})", code="image_too_large"
                )
            image.load()
            image = ImageOps.exif_transpose(image)  # type: ignore[assignment]
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected("the image has too many pixels", code="image_too_large") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageRejected("the image is damaged or incomplete", code="image_unreadable") from err
    if min(image.size) < min_side:
        raise ImageRejected(
            f"the photo is too small ({image.size[0]} x {image.size[1]} pixels);"
            f" at least {min_side} pixels on the short side",
            code="image_too_small",
        )
    pixels = np.asarray(image.convert("RGB"))
    out = io.BytesIO()
    # a new image from the pixels alone: no EXIF, XMP, ICC profile or comment survives
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return CleanImage(pixels, out.getvalue(), kind)
