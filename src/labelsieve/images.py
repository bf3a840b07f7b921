"""The one image toolkit: decode (checked), encode, resize, crop and data URLs, for every stage and module alike.

Decoding is where untrusted bytes meet the process, so it happens here only: fully (a truncated JPEG fails now, as an
`InputError`, not later inside a model) and under a pixel limit checked from the header, before any pixel is unpacked
(a 612 KB PNG can declare 14000x14000 pixels: 588 MB once decoded). labelsieve's limit replaces PIL's process-wide
decompression-bomb check, which would only warn at 89 MP and then fail with a message that names neither the image nor
the setting.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

from labelsieve.errors import ConfigError, InputError

__all__ = ["MAX_PIXELS", "MIME_FORMAT", "crop", "data_url", "decode", "decode_base64", "encode", "fit", "open_checked",
           "rgb"]

MIME_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG"}
_ENV = "LABELSIEVE_MAX_IMAGE_PIXELS"


def _env_limit(default: int = 64_000_000) -> int:
    value = os.environ.get(_ENV, "").strip()
    if not value:
        return default
    try:
        limit = int(float(value))
    except ValueError:
        limit = -1
    if limit < 0:
        raise ConfigError("environment", _ENV, f"must be a whole number of pixels (0 = no limit), got {value!r}")
    return limit


#: Largest image decoded, in pixels (width x height); 0 = no limit. From $LABELSIEVE_MAX_IMAGE_PIXELS, else 64 MP.
MAX_PIXELS = _env_limit()
Image.MAX_IMAGE_PIXELS = None  # our limit, checked with the image's name, replaces PIL's global warning and error


def _limit(max_pixels: int | None) -> int:
    return MAX_PIXELS if max_pixels is None else max_pixels


def open_checked(data: bytes, *, where: str = "image", max_pixels: int | None = None) -> Image.Image:
    """The image opened lazily (header read, pixels not yet decoded) after the pixel limit was checked: for callers that
    only need the format and size, such as a camera passing a file through untouched."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise InputError(f"{where}: could not decode the image ({len(data)} bytes): not a JPEG, PNG or other "
                         "image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{where}: could not decode the image ({len(data)} bytes): {exc}") from exc
    limit, pixels = _limit(max_pixels), image.width * image.height
    if limit and pixels > limit:
        raise InputError(
            f"{where}: {image.width}x{image.height} = {pixels:,} pixels is over the limit of {limit:,} (a decompression "
            f"bomb or an oversized frame); if the image is genuine, raise the limit with the camera attribute "
            f"'max_pixels' or the environment variable {_ENV}")
    return image


def decode(data: bytes, *, where: str = "image", max_pixels: int | None = None) -> Image.Image:
    """An RGB image, fully decoded. Corrupt, truncated or oversized input is an `InputError` naming `where`."""
    image = open_checked(data, where=where, max_pixels=max_pixels)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{where}: could not decode the image ({len(data)} bytes): {exc}") from exc
    return rgb(image)


def rgb(image: Image.Image) -> Image.Image:
    """The image in RGB, what every model takes; the same object when it already is."""
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_base64(value: object, where: str, max_pixels: int | None = None) -> Image.Image:
    """A base64 JPEG/PNG from a `do_command` payload; anything else is an `InputError` naming `where`."""
    if not isinstance(value, str):
        raise InputError(f"{where} must be a base64 string, got {type(value).__name__}")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise InputError(f"{where} is not valid base64: {exc}") from exc
    return decode(data, where=where, max_pixels=max_pixels)


def encode(image: Image.Image, mime_type: str = "image/jpeg", quality: int = 90) -> bytes:
    """JPEG or PNG bytes; modes the format cannot store (RGBA as JPEG, CMYK as PNG, ...) are converted to RGB."""
    if mime_type not in MIME_FORMAT:
        raise InputError(f"cannot encode as {mime_type!r}; supported: {', '.join(MIME_FORMAT)}")
    storable = ("RGB", "L") if mime_type == "image/jpeg" else ("RGB", "RGBA", "L", "LA", "P", "1", "I")
    if image.mode not in storable:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=MIME_FORMAT[mime_type], quality=quality)
    return buffer.getvalue()


def fit(image: Image.Image, max_side: int) -> Image.Image:
    """The image with its longer side at most `max_side` (0 = unchanged), aspect kept; a new image only if resized."""
    longest = max(image.size)
    if not max_side or longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def crop(image: Image.Image, xyxy: Sequence[float], padding: float = 0.0) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The box's pixels, grown by `padding` x its width/height on each side and clipped to the frame; also returns the
    pixel box actually cut (what a verifier saw). A box with no area inside the frame is an `InputError`."""
    if len(xyxy) != 4 or not all(math.isfinite(v) for v in xyxy):
        raise InputError(f"expected a box as 4 finite numbers x0, y0, x1, y1, got {list(xyxy)}")
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0 or padding < 0:
        raise InputError(f"cannot crop box {[x0, y0, x1, y1]} with padding {padding}: it has no area")
    box = (max(0, math.floor(x0 - padding * w)), max(0, math.floor(y0 - padding * h)),
           min(image.width, math.ceil(x1 + padding * w)), min(image.height, math.ceil(y1 + padding * h)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InputError(f"box {[x0, y0, x1, y1]} lies outside the {image.width}x{image.height} frame")
    return image.crop(box), box


def data_url(image: Image.Image, max_side: int = 0, quality: int = 90) -> str:
    """A JPEG data URL (what chat-completions endpoints take), shrunk first so the longer side is at most `max_side`."""
    return "data:image/jpeg;base64," + base64.b64encode(encode(fit(image, max_side), quality=quality)).decode("ascii")
