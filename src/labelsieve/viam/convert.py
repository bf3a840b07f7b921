"""Conversions between labelsieve values and Viam messages, kept at the edge so the core never imports viam."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.proto.app.robot import ComponentConfig
from viam.proto.service.vision import Detection
from viam.utils import struct_to_dict

from labelsieve.detections import Detections
from labelsieve.errors import InputError, UnsupportedError

__all__ = ["attributes_of", "camera_frame", "decode_base64_image", "decode_image", "detections_to_viam"]


def attributes_of(config: ComponentConfig) -> Mapping[str, Any]:
    return struct_to_dict(config.attributes)


def decode_image(image: ViamImage | bytes) -> Image.Image:
    """Decode fully (not lazily) so a truncated JPEG fails here, as INVALID_ARGUMENT, and not inside a model."""
    data = image.data if isinstance(image, ViamImage) else image
    try:
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"could not decode the image ({len(data)} bytes): {exc}") from exc
    return decoded if decoded.mode == "RGB" else decoded.convert("RGB")


def decode_base64_image(value: object, where: str) -> Image.Image:
    """A base64 JPEG/PNG from a `do_command` payload; anything else is an InputError naming where it was."""
    if not isinstance(value, str):
        raise InputError(f"{where} must be a base64 string, got {type(value).__name__}")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise InputError(f"{where} is not valid base64: {exc}") from exc
    try:
        return decode_image(data)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc


async def camera_frame(resource: str, camera: Camera | None, configured: str | None, asked: str) -> ViamImage:
    """The first image of the resource's camera dependency, for the `*_from_camera` methods."""
    if camera is None:
        raise UnsupportedError(f"{resource} has no camera; set 'camera_name' in its attributes, or send images")
    if asked not in ("", configured):
        raise InputError(f"{resource} reads camera {configured!r}, not {asked!r}")
    images, _ = await camera.get_images()
    if not images:
        raise InputError(f"camera {configured!r} returned no image")
    return images[0]


def detections_to_viam(dets: Detections, width: int, height: int) -> list[Detection]:
    return [
        Detection(
            x_min=int(round(x0)), y_min=int(round(y0)), x_max=int(round(x1)), y_max=int(round(y1)),
            confidence=conf, class_name=name,
            x_min_normalized=float(x0) / width, y_min_normalized=float(y0) / height,
            x_max_normalized=float(x1) / width, y_max_normalized=float(y1) / height,
        )
        for (x0, y0, x1, y1), conf, name in dets
    ]
