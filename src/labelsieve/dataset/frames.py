"""Frames out of capture files: the image, its boxes (normalized xyxy, label, confidence, provenance) and what the split
needs to keep one scene on one side (the stream it came from, its time, a perceptual hash)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from labelsieve import images
from labelsieve.capture.format import CaptureFile, decode_provenance
from labelsieve.errors import InputError

__all__ = ["Box", "Frame", "dhash", "frames_of"]

_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}


@dataclass(frozen=True)
class Box:
    label: str
    xyxy: tuple[float, float, float, float]  # normalized to the image, clipped to [0, 1]
    confidence: float
    provenance: dict[str, Any] | None


@dataclass(frozen=True)
class Frame:
    digest: str  # sha256 of the image bytes: the file name in the dataset, so a frame captured twice is one image
    suffix: str
    width: int
    height: int
    time: float  # seconds since the epoch, when it was requested
    stream: str  # the resource and method that captured it: consecutive frames of one stream may be one scene
    source: str  # "<capture file>#<reading>"
    boxes: tuple[Box, ...]
    dhash: int


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: near-identical frames (re-encoded, slightly moved, noisy) differ in a few bits."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def _boxes(annotations: Any) -> tuple[Box, ...]:
    boxes = []
    for b in annotations.bboxes:
        x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in
                          (b.x_min_normalized, b.y_min_normalized, b.x_max_normalized, b.y_max_normalized))
        if x1 > x0 and y1 > y0 and b.label:
            boxes.append(Box(b.label, (x0, y0, x1, y1), float(b.confidence) if b.HasField("confidence") else 1.0,
                             decode_provenance(b.id)))
    return tuple(boxes)


def frames_of(capture: CaptureFile, source: str) -> Iterator[tuple[Frame, bytes] | InputError]:
    """Each image reading with its bytes; an undecodable image comes out as an InputError for the report, not raised."""
    header = capture.header
    stream = f"{header.component_type}/{header.component_name}/{header.method_name}"
    for i, reading in enumerate(capture.readings):
        where = f"{source}#{i}"
        if reading.WhichOneof("data") != "binary":
            continue  # tabular readings carry no image
        data = reading.binary
        try:
            image = images.open_checked(data, where=where)  # labelsieve's pixel limit, as at every decode site
            suffix = _EXTENSIONS.get(image.format or "")
            if suffix is None:
                raise InputError(f"{where}: unsupported image format {image.format}")
            width, height = image.size
            image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, plenty for a 9x8 hash
            fingerprint = dhash(image)
        except (OSError, ValueError, SyntaxError) as exc:
            yield InputError(f"{where}: not a readable image: {exc}")
            continue
        except InputError as exc:
            yield exc
            continue
        meta = reading.metadata
        time = meta.time_requested.seconds + meta.time_requested.nanos / 1e9
        frame = Frame(hashlib.sha256(data).hexdigest(), suffix, width, height, time, stream, where,
                      _boxes(meta.annotations), fingerprint)
        yield frame, data
