"""What a backlog job reads: streams of camera frames from capture files, image folders or globs, and videos.

A *stream* is what the near-duplicate gate walks in time order: one folder of capture files (viam-server writes one
folder per resource and method, and names files by time), one image folder or glob (in name order), one video. Every
frame carries a `key` that names it the same way on every run (the ledger's identity and the output file's name) and its
`origin`: where it came from, when it was captured, by which component.

Listing is eager and fails at once on a source that does not exist; reading is lazy, so a million-frame backlog is never
held in memory, and a file or frame that cannot be read comes out as `Unreadable`, naming it, instead of stopping the job.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from labelsieve import images
from labelsieve.camera.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from labelsieve.capture.format import CAPTURE_SUFFIX, read_capture
from labelsieve.dataset.sources import SourceFile, list_captures, read_source
from labelsieve.errors import InputError, LabelsieveError

__all__ = ["SourceFrame", "Stream", "Unreadable", "open_sources"]

#: Capture methods whose binary readings are camera frames (a vision service's CaptureAllFromCamera holds its image).
FRAME_METHODS = frozenset({"GetImages", "ReadImage", "CaptureAllFromCamera"})
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class SourceFrame:
    key: str  # "<capture file>#<reading>", "<image file>", "<video>@<frame index>": the same on every run
    stream: str
    time: float  # capture time, seconds since the epoch
    data: bytes  # the image as stored (a video frame: JPEG-encoded)
    mime_type: str
    component: str  # the camera that took it, as much as the source says ("" for a plain image)
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unreadable:
    """A file or frame that could not be read: counted and named in the summary, never fatal."""

    key: str
    stream: str
    reason: str


Item = SourceFrame | Unreadable


@dataclass(frozen=True)
class Stream:
    """One gated sequence. `paths` are capture files or images in time order, or one video."""

    name: str
    kind: Literal["captures", "images", "video"]
    paths: tuple[str, ...]
    every: int = 1  # videos: keep every Nth frame
    fps: float = 0.0  # videos: or about this many frames a second
    cache: str = ""  # where remote capture files are downloaded once

    @property
    def estimate(self) -> int:
        """Frames to expect, for the progress bar (capture files: one reading each, as viam-server writes images)."""
        if self.kind != "video":
            return len(self.paths)
        import cv2

        capture = cv2.VideoCapture(self.paths[0])
        try:
            return -(-int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) // self._step(float(capture.get(cv2.CAP_PROP_FPS))))
        finally:
            capture.release()

    def _step(self, video_fps: float) -> int:
        return max(1, round(video_fps / self.fps)) if self.fps and video_fps > 0 else self.every

    def frames(self) -> Iterator[Item]:
        if self.kind == "captures":
            for path in self.paths:
                yield from self._capture_frames(path)
        elif self.kind == "images":
            for path in self.paths:
                yield self._image_frame(path)
        else:
            yield from self._video_frames()

    def _capture_frames(self, url: str) -> Iterator[Item]:
        try:
            data = read_source(SourceFile(url, 0), Path(self.cache))
            capture = read_capture(Path(url), data)
        except (OSError, LabelsieveError) as exc:
            yield Unreadable(url, self.name, f"unreadable capture file: {exc}")
            return
        header = capture.header
        if header.method_name not in FRAME_METHODS:
            return  # tabular and point-cloud captures hold no camera frame
        component = f"{header.component_type}/{header.component_name}"
        for i, reading in enumerate(capture.readings):
            if reading.WhichOneof("data") != "binary":
                continue
            stamp = reading.metadata.time_received if reading.metadata.HasField("time_received") \
                else reading.metadata.time_requested
            when = stamp.seconds + stamp.nanos / 1e9
            sources = [c.label for c in reading.metadata.annotations.classifications] \
                if header.method_name == "GetImages" else []  # viam-server labels a GetImages image with its source
            origin = {"file": url, "reading": i, "captured_at": _iso(when), "component": component,
                      "method": header.method_name, **({"source_name": sources[0]} if sources else {})}
            mime = str(reading.metadata.mime_type or header.mime_type or "image/jpeg")
            yield SourceFrame(f"{url}#{i}", self.name, when, reading.binary, mime, component, origin)

    def _image_frame(self, path: str) -> Item:
        try:
            data = Path(path).read_bytes()
            when = os.stat(path).st_mtime
            kind = images.open_checked(data, where=path).format or ""
        except (OSError, LabelsieveError) as exc:
            return Unreadable(path, self.name, f"unreadable image: {exc}")
        return SourceFrame(path, self.name, when, data, _MIME.get(kind, "image/jpeg"), "",
                           {"file": path, "captured_at": _iso(when)})

    def _video_frames(self) -> Iterator[Item]:
        import cv2
        from PIL import Image

        path = self.paths[0]
        capture = cv2.VideoCapture(path)
        try:
            if not capture.isOpened():
                yield Unreadable(path, self.name, "unreadable video: OpenCV cannot open it")
                return
            video_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            step, start, index = self._step(video_fps), os.stat(path).st_mtime, 0
            while capture.grab():
                if index % step == 0:
                    ok, bgr = capture.retrieve()
                    key = f"{path}@{index}"
                    if not ok:
                        yield Unreadable(key, self.name, "unreadable video frame")
                    else:
                        data = images.encode(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                        when = start + (index / video_fps if video_fps > 0 else 0.0)
                        yield SourceFrame(key, self.name, when, data, "image/jpeg", "",
                                          {"file": path, "frame": index, "captured_at": _iso(when)})
                index += 1
        finally:
            capture.release()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _capture_streams(source: str, cache: Path) -> list[Stream]:
    """One stream per folder of capture files (a resource and method, as viam-server lays them out)."""
    folders: dict[str, list[str]] = {}
    for file in list_captures(source):
        folders.setdefault(file.url.rsplit("/", 1)[0], []).append(file.url)
    return [Stream(folder, "captures", tuple(sorted(files)), cache=str(cache)) for folder, files in sorted(folders.items())]


def open_sources(sources: Sequence[str], *, every: int = 1, fps: float = 0.0, cache: Path) -> list[Stream]:
    """The streams of every source, mixed freely. A source that does not exist, or matches nothing, is an `InputError`
    naming it, before any frame is read."""
    streams: list[Stream] = []
    for source in sources:
        if "://" in source and not source.startswith("file://"):
            found = _capture_streams(source, cache / hashlib.sha256(source.encode()).hexdigest()[:16])
        else:
            found = _local_streams(source, every, fps, cache)
        if not found:
            raise InputError(f"{source}: no camera frames there (no .capture files, images "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}) or videos)")
        streams += found
    return streams


def _local_streams(source: str, every: int, fps: float, cache: Path) -> list[Stream]:
    path = Path(source.removeprefix("file://")).expanduser().absolute()  # keys name frames the same from any folder
    if glob.has_magic(str(path)):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        if not matches:
            raise InputError(f"{source}: the pattern matches no files")
        captures = [p for p in matches if p.suffix == CAPTURE_SUFFIX]
        found = [s for p in captures for s in _capture_streams(str(p), cache)]
        videos = [Stream(str(p), "video", (str(p),), every, fps) for p in matches if p.suffix.lower() in VIDEO_SUFFIXES]
        pictures = tuple(str(p) for p in matches if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return found + videos + ([Stream(str(path), "images", pictures)] if pictures else [])
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    if path.is_file():
        if path.suffix == CAPTURE_SUFFIX:
            return _capture_streams(str(path), cache)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return [Stream(str(path), "video", (str(path),), every, fps)]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return [Stream(str(path.parent), "images", (str(path),))]
        raise InputError(f"{source}: not a capture file, an image or a video")
    if any(path.rglob(f"*{CAPTURE_SUFFIX}")):
        return _capture_streams(str(path), cache)
    pictures = tuple(str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    videos = [Stream(str(p), "video", (str(p),), every, fps) for p in sorted(path.iterdir())
              if p.suffix.lower() in VIDEO_SUFFIXES]
    return ([Stream(str(path), "images", pictures)] if pictures else []) + videos
