"""Conversions between labelsieve values and Viam messages, kept at the edge so the core never imports viam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.proto.app.robot import ComponentConfig
from viam.proto.service.vision import Detection
from viam.utils import struct_to_dict

from labelsieve.detections import Detections
from labelsieve.errors import InputError, UnsupportedError

__all__ = ["attributes_of", "camera_frame", "detections_from_viam", "detections_to_viam"]


def attributes_of(config: ComponentConfig) -> Mapping[str, Any]:
    return struct_to_dict(config.attributes)


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
            x_min=round(x0), y_min=round(y0), x_max=round(x1), y_max=round(y1),
            confidence=conf, class_name=name,
            x_min_normalized=float(x0) / width, y_min_normalized=float(y0) / height,
            x_max_normalized=float(x1) / width, y_max_normalized=float(y1) / height,
        )
        for (x0, y0, x1, y1), conf, name in dets
    ]


_PIXEL = ("x_min", "y_min", "x_max", "y_max")


def detections_from_viam(detections: Sequence[Detection], classes: Sequence[str] | None = None, *,
                         width: int | None = None, height: int | None = None) -> Detections:
    """The inverse of `detections_to_viam`. A box without pixel coordinates (some services send only the normalized
    ones) is scaled by `width` x `height`, which must then be given."""
    rows: list[list[float]] = []
    for i, d in enumerate(detections):
        if all(d.HasField(f) for f in _PIXEL):  # type: ignore[arg-type]  # the protobuf stubs list literal names
            rows.append([d.x_min, d.y_min, d.x_max, d.y_max])
        elif width and height and all(d.HasField(f"{f}_normalized") for f in _PIXEL):  # type: ignore[arg-type]
            rows.append([d.x_min_normalized * width, d.y_min_normalized * height,
                         d.x_max_normalized * width, d.y_max_normalized * height])
        else:
            have = "normalized coordinates only, and no image size was given" if d.HasField("x_min_normalized") \
                else "no coordinates"
            raise InputError(f"detection {i} ({d.class_name!r}) has {have}")
    return Detections(np.array(rows, np.float32).reshape(-1, 4), np.array([d.confidence for d in detections], np.float32),
                      np.array([d.class_name for d in detections], np.str_), classes=tuple(classes or ()))
