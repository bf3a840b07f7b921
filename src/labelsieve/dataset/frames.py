"""Frames out of capture files: the image, its boxes (a `Detections` in pixels, each box's provenance inside it, the
capture's source, time and stream in its metadata) and what the split needs to keep one scene on one side."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageStat

from labelsieve.capture.format import CaptureFile, from_annotations
from labelsieve.detections import Detections, box_iou
from labelsieve.errors import InputError
from labelsieve.images import decode, encode, open_checked

__all__ = ["CapturedFrame", "dhash", "fill_regions", "fillable", "frames_of", "unusable"]

_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}
_FILLED_AS = {".png": "image/png"}  # a filled frame is re-encoded: PNG stays PNG, every other format becomes JPEG


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


def fill_regions(data: bytes, regions: Detections, suffix: str, where: str) -> tuple[bytes, str]:
    """The image with each region painted in the image's mean colour (the way detection datasets blank crowd and ignore
    regions, so the model sees no object there), re-encoded; and its new suffix."""
    image = decode(data, where=where)
    colour = tuple(round(v) for v in ImageStat.Stat(image).mean)
    draw = ImageDraw.Draw(image)
    for (x0, y0, x1, y1), _, _ in regions:
        draw.rectangle((float(x0), float(y0), float(x1), float(y1)), fill=colour)
    mime = _FILLED_AS.get(suffix, "image/jpeg")
    return encode(image, mime, quality=95), ".png" if mime == "image/png" else ".jpg"


def fillable(ignore: Detections, boxes: Detections) -> bool:
    """Whether a frame's ignore regions can be painted over: not where one overlaps a labeled box (the paint would cover
    part of a labeled object)."""
    return not (len(ignore) and len(boxes) and (box_iou(ignore.xyxy, boxes.xyxy) > 0).any())


def _ignore(boxes: Detections) -> Detections | None:
    ignore = boxes.metadata.get("ignore")
    return ignore if isinstance(ignore, Detections) and len(ignore) else None


def _unresolved(boxes: Detections, fill_ignore: bool) -> str | None:
    """Why a frame with ignore regions cannot be used as it is, or None (none, or they may be filled)."""
    if (ignore := _ignore(boxes)) is None:
        return None
    if not fill_ignore:
        return (f"{len(ignore)} ignore region(s) (asked-about boxes the verifier left unresolved); left out so that no "
                "unverified object becomes background (--fill-ignore paints them over instead)")
    if not fillable(ignore, boxes):
        return "an ignore region overlaps a labeled box, so it cannot be painted over; left out"
    return None


def frames_of(capture: CaptureFile, source: str, *, fill_ignore: bool = False
              ) -> Iterator[tuple[CapturedFrame, bytes] | InputError]:
    """Each image reading with its bytes. An unreadable or over-limit image, a frame with a box that cannot be used, or
    one with ignore regions (unless `fill_ignore` paints them over) comes out as an InputError for the report, not
    raised."""
    header = capture.header
    stream = f"{header.component_type}/{header.component_name}/{header.method_name}"
    for i, reading in enumerate(capture.readings):
        where = f"{source}#{i}"
        if reading.WhichOneof("data") != "binary":
            continue  # tabular readings carry no image
        data = reading.binary
        try:
            suffix, width, height, fingerprint = _open(data, where)
            boxes = from_annotations(reading.metadata.annotations, width, height)
        except InputError as exc:
            yield exc
            continue
        meta = reading.metadata
        if (problem := unusable(boxes, width, height)) is not None:
            yield InputError(f"{where}: {problem}; the frame is left out rather than kept with that object as background")
            continue
        if (problem := _unresolved(boxes, fill_ignore)) is not None:
            yield InputError(f"{where}: {problem}")
            continue
        if (ignore := _ignore(boxes)) is not None:
            try:
                data, suffix = fill_regions(data, ignore, suffix, where)
            except InputError as exc:
                yield exc
                continue
        boxes = Detections(boxes.xyxy, boxes.confidence, boxes.class_name, boxes.data, boxes.classes,
                           {"filled_regions": len(ignore)} if ignore is not None else {})
        time = meta.time_requested.seconds + meta.time_requested.nanos / 1e9
        detections = boxes.clip(width, height).with_metadata(source=where, time=time, stream=stream)
        yield CapturedFrame(hashlib.sha256(data).hexdigest(), suffix, width, height, detections, fingerprint), data
