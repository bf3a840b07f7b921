"""Frames out of capture files: the image, its boxes (a `Detections` in pixels, each box's provenance inside it, the
capture's source, time and stream in its metadata) and what the split needs to keep one scene on one side."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from labelsieve.capture.format import CaptureFile, from_annotations
from labelsieve.detections import Detections
from labelsieve.errors import InputError
from labelsieve.images import open_checked

__all__ = ["CapturedFrame", "dhash", "frames_of", "unusable"]

_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}


@dataclass(frozen=True)
class CapturedFrame:
    """A dataset's frame: an image read from a capture file, by content."""

    digest: str  # sha256 of the image bytes: the file name in the dataset, so a frame captured twice is one image
    suffix: str
    width: int
    height: int
    detections: Detections  # clipped to the image; metadata: source ("<capture file>#<reading>"), time, stream
    dhash: int

    @property
    def time(self) -> float:
        """Seconds since the epoch, when it was requested."""
        return float(self.detections.metadata.get("time", 0.0))

    @property
    def stream(self) -> str:
        """The resource and method that captured it: consecutive frames of one stream may be one scene."""
        return str(self.detections.metadata.get("stream", ""))

    @property
    def source(self) -> str:
        return str(self.detections.metadata.get("source", ""))


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: near-identical frames (re-encoded, slightly moved, noisy) differ in a few bits."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def unusable(detections: Detections, width: int, height: int) -> str | None:
    """Why a box of this frame cannot be a label, or None. A box a little out of frame is clipped and kept; one with a
    non-finite corner, no label, corners the wrong way round, or nothing inside the frame cannot be: leaving it out
    would make its object background, so the caller skips the whole frame."""
    for i, ((x0, y0, x1, y1), _, name) in enumerate(detections):
        corners = [float(v) for v in (x0, y0, x1, y1)]
        if not name.strip():
            return f"box {i} has no label"
        if not all(math.isfinite(v) for v in corners):
            return f"box {i} ({name}) has a corner that is not a finite number: {corners}"
        if x1 <= x0 or y1 <= y0:
            return f"box {i} ({name}) is inverted or empty: {corners}"
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            return f"box {i} ({name}) lies wholly outside the {width}x{height} image: {corners}"
    return None


def _open(data: bytes, where: str) -> tuple[str, int, int, int]:
    """(suffix, width, height, hash) of an image; unreadable, unsupported or over-limit images are an InputError."""
    try:
        image = open_checked(data, where=where)
        suffix = _EXTENSIONS.get(image.format or "")
        if suffix is None:
            raise InputError(f"{where}: unsupported image format {image.format}")
        width, height = image.size
        image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, plenty for a 9x8 hash
        return suffix, width, height, dhash(image)
    except Image.DecompressionBombError as exc:  # PIL's own check, where its limit is lower than ours
        raise InputError(f"{where}: over PIL's image size limit: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{where}: not a readable image: {exc}") from exc


def frames_of(capture: CaptureFile, source: str) -> Iterator[tuple[CapturedFrame, bytes] | InputError]:
    """Each image reading with its bytes. An unreadable or over-limit image, or a frame with a box that cannot be used,
    comes out as an InputError for the report, not raised."""
    header = capture.header
    stream = f"{header.component_type}/{header.component_name}/{header.method_name}"
    for i, reading in enumerate(capture.readings):
        where = f"{source}#{i}"
        if reading.WhichOneof("data") != "binary":
            continue  # tabular readings carry no image
        data = reading.binary
        try:
            suffix, width, height, fingerprint = _open(data, where)
        except InputError as exc:
            yield exc
            continue
        meta = reading.metadata
        boxes = from_annotations(meta.annotations, width, height)
        if (problem := unusable(boxes, width, height)) is not None:
            yield InputError(f"{where}: {problem}; the frame is left out rather than kept with that object as background")
            continue
        time = meta.time_requested.seconds + meta.time_requested.nanos / 1e9
        detections = boxes.clip(width, height).with_metadata(source=where, time=time, stream=stream)
        yield CapturedFrame(hashlib.sha256(data).hexdigest(), suffix, width, height, detections, fingerprint), data
