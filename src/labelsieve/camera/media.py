"""A camera that plays an image folder or glob, a video file, or a webcam: the way to try the pipeline without a robot.

Frames read from image files are kept encoded (as served, after resizing) in an LRU cache bounded in bytes
(`cache_bytes`), so a looping folder is decoded once however large its files. Every file's declared pixel count is checked
against `max_pixels` before it is decoded, so a decompression bomb in the folder is an error naming the file.

Playback: with `fps` > 0 the source advances with the wall clock (a live feed: a slow reader skips frames); with `fps` 0
each read returns the next frame (a batch job: nothing is skipped). At the end it loops, or with `loop: false` reports
`SourceExhausted` so a capture job stops instead of storing the last frame again and again.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from labelsieve import images
from labelsieve.attributes import Attributes, FieldProblem, resolve_path
from labelsieve.errors import InputError, SourceExhausted

__all__ = ["FrameCache", "MediaConfig", "MediaFrame", "MediaSource"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
_WEBCAM = re.compile(r"^(?:webcam:)?(\d+)$|^(/dev/video\d+)$")


@dataclass(frozen=True)
class MediaConfig(Attributes):
    #: A folder, a glob ("frames/*.png"), a video file, or a webcam ("0", "webcam:0", "/dev/video0").
    source: str
    #: Playback rate in frames per second; 0 = one new frame per read.
    fps: float = 0.0
    loop: bool = True
    mime_type: Literal["image/jpeg", "image/png"] = "image/jpeg"
    jpeg_quality: int = 90
    #: Resize so the longer side is at most this many pixels; 0 keeps the source size.
    max_side: int = 0
    #: Largest image file decoded, in pixels; unset = $LABELSIEVE_MAX_IMAGE_PIXELS or 64 MP; 0 = no limit.
    max_pixels: int | None = None
    #: Bytes of encoded frames kept in memory for image folders (frames as served); 0 = no cache.
    cache_bytes: int = 64 * 1024 * 1024

    def check(self) -> None:
        if self.fps < 0:
            raise FieldProblem("fps", f"must be 0 or more, got {self.fps}", "0 gives one new frame per read")
        if not 1 <= self.jpeg_quality <= 100:
            raise FieldProblem("jpeg_quality", f"must be 1 to 100, got {self.jpeg_quality}")
        for name in ("max_side", "max_pixels", "cache_bytes"):
            if (value := getattr(self, name)) is not None and value < 0:
                raise FieldProblem(name, f"must be 0 or more, got {value}")
        kind, _ = self.kind()
        if kind == "images" and not self.images():
            raise FieldProblem("source", f"{self.source!r} matches no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
                               "give a folder of images, a glob, a video file or a webcam index")

    def kind(self) -> tuple[Literal["images", "video", "webcam"], str]:
        if m := _WEBCAM.match(self.source):
            device = m.group(2) or f"/dev/video{m.group(1)}"
            if not Path(device).exists():
                raise FieldProblem("source", f"webcam {device} does not exist", "check `ls /dev/video*`")
            return "webcam", m.group(1) or device
        path = resolve_path(self.source)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            if not path.is_file():
                raise FieldProblem("source", f"video {path} does not exist", "paths are relative to the machine config")
            return "video", str(path)
        if not path.exists() and not glob.has_magic(self.source):
            raise FieldProblem("source", f"{path} does not exist", "paths are relative to the machine config")
        return "images", str(path)

    def images(self) -> list[Path]:
        path = resolve_path(self.source)
        candidates = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else sorted(map(Path, glob.glob(str(path))))
        return [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


@dataclass(frozen=True)
class MediaFrame:
    """The media camera's output: one encoded image, ready to serve (the filter's input is `labelsieve.filter.Frame`)."""

    data: bytes
    mime_type: str
    name: str
    width: int
    height: int


class FrameCache:
    """Encoded frames by file, least recently used out first, holding at most `budget` bytes of frame data."""

    def __init__(self, budget: int) -> None:
        self.budget, self.size = budget, 0
        self._frames: OrderedDict[Path, MediaFrame] = OrderedDict()

    def get(self, path: Path, make: Callable[[Path], MediaFrame]) -> MediaFrame:
        if (frame := self._frames.get(path)) is not None:
            self._frames.move_to_end(path)
            return frame
        frame = make(path)
        if len(frame.data) <= self.budget:
            self._frames[path] = frame
            self.size += len(frame.data)
            while self.size > self.budget:
                self.size -= len(self._frames.popitem(last=False)[1].data)
        return frame

    def __len__(self) -> int:
        return len(self._frames)


class MediaSource:
    """Frames from the configured source, encoded as asked. Blocking: call from a thread, not the event loop."""

    def __init__(self, config: MediaConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.kind, self.location = config.kind()
        self._files = config.images() if self.kind == "images" else []
        self._capture: Any = None
        self._lock = threading.Lock()
        self._index = 0
        self._started = clock()
        self.cache = FrameCache(config.cache_bytes)
        self.last: MediaFrame | None = None
        if self.kind != "images":
            import cv2  # only video and webcam sources pay for OpenCV

            self._capture = cv2.VideoCapture(int(self.location) if self.location.isdigit() else self.location)
            if not self._capture.isOpened():
                raise InputError(f"could not open {self.kind} {self.location!r} with OpenCV")

    @property
    def frame_rate(self) -> float:
        if self.config.fps or self._capture is None:
            return self.config.fps
        import cv2

        return float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def read(self) -> MediaFrame:
        with self._lock:
            self.last = self._read_images() if self.kind == "images" else self._read_capture()
            return self.last

    def close(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    def _position(self, count: int | None) -> int:
        """The frame index to show now; advances by time with fps, by call without."""
        if self.config.fps:
            index = int((self._clock() - self._started) * self.config.fps)
        else:
            index, self._index = self._index, self._index + 1
        if count is not None and index >= count:
            if not self.config.loop:
                raise SourceExhausted(f"{self.config.source!r} has no more frames ({count} played; loop is off)")
            index %= count
        return index

    def _read_images(self) -> MediaFrame:
        path = self._files[self._position(len(self._files))]
        return self.cache.get(path, self._encode_path)

    def _encode_path(self, path: Path) -> MediaFrame:
        """Pass the file's bytes through untouched when it is already what was asked for: no decode, no re-encode."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"could not read {path}: {exc}") from exc
        where, limit = str(path), self.config.max_pixels
        header = images.open_checked(data, where=where, max_pixels=limit)
        if header.format == images.MIME_FORMAT[self.config.mime_type] and self._fits(header.size):
            return MediaFrame(data, self.config.mime_type, path.name, *header.size)
        return self._encode(images.decode(data, where=where, max_pixels=limit), path.name)

    def _read_capture(self) -> MediaFrame:
        import cv2

        if self.config.fps and self.kind == "video":  # frame index = elapsed seconds x fps
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, self._position(count))
        ok, bgr = self._capture.read()
        if not ok and self.kind == "video":
            if not self.config.loop:
                raise SourceExhausted(f"video {self.location} has no more frames (loop is off)")
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok:
            raise InputError(f"could not read a frame from {self.kind} {self.location!r}")
        position = int(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
        return self._encode(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), f"frame-{position:06d}")

    def _fits(self, size: tuple[int, int]) -> bool:
        return not self.config.max_side or max(size) <= self.config.max_side

    def _encode(self, image: Image.Image, name: str) -> MediaFrame:
        image = images.fit(image, self.config.max_side)
        data = images.encode(image, self.config.mime_type, self.config.jpeg_quality)
        return MediaFrame(data, self.config.mime_type, name, *image.size)
