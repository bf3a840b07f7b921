"""The one image toolkit: decode (checked), encode, resize, crop and data URLs, for every stage and module alike.

Decoding is where untrusted bytes meet the process, so it happens here only: fully (a truncated JPEG fails now, as an
`InputError`, not later inside a model) and under a pixel limit checked from the header, before any pixel is unpacked
(a 612 KB PNG can declare 14000x14000 pixels: 588 MB once decoded). PIL's process-wide `Image.MAX_IMAGE_PIXELS` is
left as the process has it (other decoders in the process rely on it); where PIL's own check refuses an image first,
its error becomes the same `InputError`, naming both limits.

Camera frames may also come raw (`image/vnd.viam.rgba`: "RGBA", width and height as big-endian uint32, then the
pixels): those are wrapped without a codec or a copy. `open_checked` + `load(image, size=...)` decode a JPEG at the
smallest 1/2, 1/4 or 1/8 scale still at least `size`, which costs a fraction of a full decode.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from labelsieve.errors import ConfigError, InputError

__all__ = ["MAX_PIXELS", "MIME_FORMAT", "RAW_RGBA", "crop", "data_url", "decode", "decode_base64", "encode", "fit",
           "load", "open_checked", "rgb"]

MIME_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG"}
RAW_RGBA = "image/vnd.viam.rgba"
_RGBA_MAGIC, _RGBA_HEADER = b"RGBA", 12
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


def _limit(max_pixels: int | None) -> int:
    return MAX_PIXELS if max_pixels is None else max_pixels


def _over_limit(where: str, size: str, limit: int,
                fix: str = f"the camera attribute 'max_pixels' or the environment variable {_ENV}") -> InputError:
    return InputError(f"{where}: {size} pixels is over the limit of {limit:,} (a decompression bomb or an oversized "
                      f"frame); if the image is genuine, raise the limit with {fix}")


def _check_limit(width: int, height: int, where: str, max_pixels: int | None) -> None:
    limit, pixels = _limit(max_pixels), width * height
    if limit and pixels > limit:
        raise _over_limit(where, f"{width}x{height} = {pixels:,}", limit)


def _refused_by_pil(exc: Exception, where: str, max_pixels: int | None) -> InputError:
    """PIL's own check (process-wide, the process's to set) refused the image before ours saw it: the same message,
    with the pixel count PIL gives and the lower of the two limits."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,}" if found else "its"
    pil = (Image.MAX_IMAGE_PIXELS or 0) * (2 if isinstance(exc, Image.DecompressionBombError) else 1)
    ours = _limit(max_pixels)
    if ours and ours <= pil:
        return _over_limit(where, size, ours)
    return _over_limit(where, size, pil, "PIL.Image.MAX_IMAGE_PIXELS, which this process sets (labelsieve leaves it)")


def _raw_rgba(data: bytes, where: str, max_pixels: int | None) -> Image.Image:
    """viam's raw frame as an RGBX image sharing `data`'s memory (the alpha byte is ignored, never copied out)."""
    if len(data) < _RGBA_HEADER:
        raise InputError(f"{where}: a raw RGBA frame needs a {_RGBA_HEADER}-byte header, got {len(data)} bytes")
    width, height = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
    _check_limit(width, height, where, max_pixels)
    if not width or not height or len(data) != _RGBA_HEADER + 4 * width * height:
        raise InputError(f"{where}: a raw RGBA frame of {width}x{height} needs {4 * width * height:,} bytes after its "
                         f"header, got {len(data) - _RGBA_HEADER:,}")
    return Image.frombuffer("RGBX", (width, height), np.frombuffer(data, np.uint8, offset=_RGBA_HEADER), "raw", "RGBX", 0, 1)


def open_checked(data: bytes, *, where: str = "image", max_pixels: int | None = None) -> Image.Image:
    """The image opened lazily (header read, pixels not yet decoded) after the pixel limit was checked: for callers that
    only need the format and size, such as a camera passing a file through untouched, and for `load`."""
    if data[:4] == _RGBA_MAGIC:  # no JPEG, PNG or other format PIL reads starts so
        return _raw_rgba(data, where, max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning where a filter raises it
        raise _refused_by_pil(exc, where, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{where}: could not decode the image ({len(data)} bytes): not a JPEG, PNG or other "
                         "image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{where}: could not decode the image ({len(data)} bytes): {exc}") from exc
    _check_limit(image.width, image.height, where, max_pixels)
    return image


def load(image: Image.Image, *, where: str = "image", size: tuple[int, int] | None = None) -> Image.Image:
    """The pixels of an image from `open_checked`, in RGB (or RGBX, a raw frame as it came). With `size`, a JPEG is
    decoded at the smallest 1/2, 1/4 or 1/8 scale still covering `size` (width, height): the caller resizes anyway."""
    if size is not None and image.format == "JPEG":
        image.draft("RGB", size)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{where}: could not decode the image: {exc}") from exc
    return image if image.mode == "RGBX" else rgb(image)


def decode(data: bytes, *, where: str = "image", max_pixels: int | None = None) -> Image.Image:
    """An RGB image, fully decoded. Corrupt, truncated or oversized input is an `InputError` naming `where`."""
    return rgb(load(open_checked(data, where=where, max_pixels=max_pixels), where=where))


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
