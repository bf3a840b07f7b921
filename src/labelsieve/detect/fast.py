"""The fast detector: a trained YOLO served from an ONNX file with onnxruntime and numpy only (letterbox, decode, NMS),
or from a `.pt` checkpoint with ultralytics. The ONNX path imports neither torch nor ultralytics, so a robot that runs
only this needs `pip install labelsieve` (viam-sdk, numpy, pillow, onnxruntime) and nothing heavier.

`model_path` is a `.onnx` or `.pt` file, a model directory (`model.onnx` preferred, then `model.pt`), or a fleet URL
whose `current` pointer names the model to serve (see `labelsieve.train.fleet`). `ModelSource.current()` says which
model that is right now and where it lies locally; the shell polls it and swaps when it changes.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from labelsieve import images
from labelsieve.attributes import Attributes, FieldProblem, resolve_path
from labelsieve.detections import Detections
from labelsieve.errors import BackendUnavailable, ModelError
from labelsieve.paths import module_data
from labelsieve.train.fleet import POINTER, fetch_model, is_url, read_pointer

__all__ = ["FastDetectorConfig", "FastModel", "ModelSource", "OnnxModel", "load_model", "pick_model_file"]

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".pt")
_MAX_CANDIDATES = 2000  # boxes entering NMS, best first: bounds its O(n^2) memory when confidence is set near 0


@dataclass(frozen=True)
class FastDetectorConfig(Attributes):
    """A trained YOLO as a Viam vision service. `confidence` and `iou` are the usual YOLO thresholds; `poll_interval_s`
    is how often the model file, directory or fleet pointer is checked for a new model."""

    model_path: str
    confidence: float = 0.25
    iou: float = 0.45
    max_detections: int = 300
    camera_name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    poll_interval_s: float = 5.0

    def check(self) -> None:
        for name in ("confidence", "iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FieldProblem(name, f"must be between 0 and 1, got {getattr(self, name)}")
        if self.max_detections < 1:
            raise FieldProblem("max_detections", f"must be at least 1, got {self.max_detections}")
        if self.poll_interval_s <= 0:
            raise FieldProblem("poll_interval_s", f"must be positive, got {self.poll_interval_s}",
                               "a model is picked up within this many seconds after it changes")
        if is_url(self.model_path):
            return
        path = resolve_path(self.model_path)
        if path.is_file() and path.suffix not in MODEL_SUFFIXES:
            raise FieldProblem("model_path", f"{path} is neither .onnx nor .pt",
                               "export with `yolo export format=onnx`, or point at a labelsieve model directory")
        if not path.exists():
            raise FieldProblem("model_path", f"{path} does not exist",
                               "train one with `labelsieve train`, or give a .onnx/.pt file or a fleet URL")


class FastModel(Protocol):
    names: tuple[str, ...]

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int) -> Detections: ...


def _names(raw: Any) -> tuple[str, ...]:
    """ultralytics stores names as a dict {id: name} (a Python literal in ONNX metadata)."""
    names = ast.literal_eval(raw) if isinstance(raw, str) else raw
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(map(str, names))


def letterbox(image: Image.Image, size: tuple[int, int]) -> tuple[npt.NDArray[np.float32], float, tuple[float, float]]:
    """ultralytics' letterbox in numpy: scale to fit, pad evenly with grey 114. -> (1x3xHxW in [0, 1], scale, pad)."""
    height, width = size
    scale = min(height / image.height, width / image.width)
    new_w, new_h = round(image.width * scale), round(image.height * scale)
    pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
    canvas = np.full((height, width, 3), 114, np.uint8)
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    image = images.rgb(image)
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR) if scale != 1 else image
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized)
    return (canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0), scale, (left, top)


def decode_yolo(output: npt.NDArray[np.float32], names: tuple[str, ...], confidence: float, iou: float,
                max_detections: int, scale: float, pad: tuple[float, float], image_size: tuple[int, int]) -> Detections:
    """YOLO (v8/11) head output (1, 4 + classes, anchors) -> Detections in the original image's pixels."""
    head = output[0]  # (4 + classes, anchors): center x, center y, width, height, then one score per class
    best = head[4:].max(axis=0)  # reduce along the contiguous axis: ~10x faster than on the transpose
    keep = np.flatnonzero(best > confidence)
    keep = keep[np.argsort(-best[keep], kind="stable")[:_MAX_CANDIDATES]]
    class_ids = head[4:, keep].argmax(axis=0)
    cx, cy, w, h = head[:4, keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    xyxy = (xyxy - np.array([pad[0], pad[1], pad[0], pad[1]], np.float32)) / scale
    labels = np.array(names, dtype=np.str_)[class_ids] if len(keep) else np.zeros(0, np.str_)
    dets = Detections(xyxy, best[keep], labels, classes=names).nms(iou)
    return dets[: max_detections].clip(*image_size)


class OnnxModel:
    """onnxruntime session over an ultralytics ONNX export; class names and input size from its metadata."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ModelError(f"{path}: device 'cuda' was requested but onnxruntime has no CUDA provider "
                             f"(available: {', '.join(available)}); install onnxruntime-gpu or set device to 'cpu'")
        providers = ["CUDAExecutionProvider"] if device != "cpu" and "CUDAExecutionProvider" in available else []
        try:
            self.session = ort.InferenceSession(str(path), providers=[*providers, "CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types, not exported
            raise ModelError(f"{path}: onnxruntime could not load it: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        labels = path.parent / "labels.txt"  # a Viam ML model package's class list, one per line in class-id order
        if "names" in meta:
            self.names = _names(meta["names"])
        elif labels.is_file():
            self.names = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
        else:
            raise ModelError(f"{path}: no class names in the ONNX metadata and no labels.txt beside it; export it with "
                             "ultralytics (`labelsieve train` or `yolo export format=onnx`)")
        shape = self.session.get_inputs()[0].shape
        size = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        self.input_size = (shape[2], shape[3]) if isinstance(shape[2], int) else (int(size[0]), int(size[1]))
        self.input_name = self.session.get_inputs()[0].name
        self.end_to_end = meta.get("end2end") == "True"
        if self.end_to_end:
            raise ModelError(f"{path}: end-to-end (NMS-free) exports are not supported; export with nms=False")

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int) -> Detections:
        tensor, scale, pad = letterbox(image, self.input_size)
        (output,) = self.session.run(None, {self.input_name: tensor})[:1]
        return decode_yolo(output, self.names, confidence, iou, max_detections, scale, pad, image.size)


class UltralyticsModel:
    """A `.pt` checkpoint through ultralytics (imports torch): for GPUs and for comparing against the ONNX path."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        from labelsieve.train.offline import yolo_class

        YOLO = yolo_class()
        try:
            self.model = YOLO(str(path), task="detect")
        except Exception as exc:  # torch.load and ultralytics raise many unrelated types for a bad checkpoint
            raise ModelError(f"{path}: ultralytics could not load it: {type(exc).__name__}: {exc}") from exc
        self.names = _names(self.model.names)
        self.device = None if device == "auto" else device
        self._lock = threading.Lock()  # an ultralytics predictor is not safe to share between threads

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int) -> Detections:
        with self._lock:
            (result,) = self.model.predict(images.rgb(image), conf=confidence, iou=iou, max_det=max_detections,
                                           device=self.device, verbose=False)
        boxes = result.boxes
        return Detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                          np.array(self.names, dtype=np.str_)[boxes.cls.cpu().numpy().astype(int)], classes=self.names)


def pick_model_file(path: Path) -> Path:
    """A model file as it is; in a directory `model.onnx`, then `model.pt`, then a single .onnx or .pt."""
    if path.is_file():
        return path
    for candidate in (path / "model.onnx", path / "model.pt"):
        if candidate.is_file():
            return candidate
    for suffix in MODEL_SUFFIXES:
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) == 1:
            return found[0]
    raise ModelError(f"{path}: no model.onnx or model.pt (nor a single .onnx or .pt file) in this directory")


def load_model(path: Path, device: str = "auto") -> FastModel:
    file = pick_model_file(path)
    if file.suffix == ".onnx":
        return OnnxModel(file, device)
    if file.suffix == ".pt":
        return UltralyticsModel(file, device)
    raise ModelError(f"{file}: not a .onnx or .pt model")


class ModelSource:
    """Which model `model_path` names now, in two steps: `version()` is cheap (a stat, or one read of the fleet pointer)
    and changes whenever the model does; `fetch(version)` returns the local model file, downloading a fleet model into
    the cache once. When the storage cannot be reached, the model fetched last keeps serving, across restarts too.
    """

    def __init__(self, model_path: str, cache: Path | None = None) -> None:
        self.model_path = model_path
        fleet = hashlib.sha256(model_path.encode()).hexdigest()[:12]  # services following other fleets keep apart
        self.cache = cache or module_data() / "fast-detector" / fleet
        self._remembered = self.cache / "current"
        self._fetching = threading.Lock()  # the first load and the watcher may ask for the same model at once
        self._offline = False

    @property
    def is_fleet(self) -> bool:
        return is_url(self.model_path)

    def version(self) -> str:
        if not self.is_fleet:
            try:
                file = pick_model_file(resolve_path(self.model_path))
                stat = file.stat()
            except OSError as exc:
                raise ModelError(f"cannot read model_path {self.model_path}: {exc}") from exc
            return f"{file.name}@{stat.st_mtime_ns}:{stat.st_size}"
        try:
            pointer = read_pointer(self.model_path)
        except BackendUnavailable as exc:
            if (cached := self.cached_version()) is None:
                raise
            if not self._offline:  # once per outage, not once per poll
                log.warning("serving the cached model %s: %s", cached, exc)
            self._offline = True
            return cached
        self._offline = False
        if pointer is None:
            raise ModelError(f"{self.model_path}: nothing deployed yet (no '{POINTER}' pointer); "
                             "run `labelsieve deploy MODEL_DIR --to URL`")
        return str(pointer["model"])

    def cached_version(self) -> str | None:
        """The version to serve at start without waiting on the network: a local file's, or the fleet model fetched last
        (None when there is none yet, or a local path is unreadable)."""
        if self.is_fleet:
            return self._remembered.read_text() if self._remembered.is_file() else None
        try:
            return self.version()
        except ModelError:
            return None

    def fetch(self, version: str) -> Path:
        if not self.is_fleet:
            return pick_model_file(resolve_path(self.model_path))
        with self._fetching:
            local = fetch_model(self.model_path, version, self.cache / "models")
            partial = self._remembered.with_suffix(".tmp")  # remembered only once the model is complete in the cache
            partial.write_text(version)
            os.replace(partial, self._remembered)
        return pick_model_file(local)
