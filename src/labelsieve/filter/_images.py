"""TEMPORARY stand-in for helper A's `labelsieve.images` (crop, encode); deleted once it lands on main."""

from __future__ import annotations

import io

from PIL import Image

_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG"}


def crop(image: Image.Image, xyxy: tuple[float, float, float, float], padding: float = 0.0
         ) -> tuple[Image.Image, tuple[int, int, int, int]]:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    pad_x, pad_y = (x1 - x0) * padding, (y1 - y0) * padding
    left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
    right, bottom = min(image.width, int(round(x1 + pad_x))), min(image.height, int(round(y1 + pad_y)))
    box = (left, top, max(right, left + 1), max(bottom, top + 1))
    return image.crop(box), box


def encode(image: Image.Image, mime: str = "image/jpeg") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=_FORMAT[mime], quality=90)
    return buffer.getvalue()
