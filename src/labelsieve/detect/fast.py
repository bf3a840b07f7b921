"""The fast detector: a trained YOLO served from an ONNX file with onnxruntime and numpy only (letterbox, decode, NMS),
or from a `.pt` checkpoint with ultralytics. The ONNX path imports neither torch nor ultralytics, so a robot that runs
only this needs `pip install labelsieve` (viam-sdk, numpy, pillow, onnxruntime) and nothing heavier.

`model_path` is a `.onnx` or `.pt` file, a model directory (`model.int8.onnx`, `model.onnx`, then `model.pt`), or a
fleet URL whose `current` pointer names the model to serve (see `labelsieve.fleet`); `labelsieve.detect.source` keeps
the served model current.
"""

from __future__ import annotations

import ast
import json
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
from labelsieve.errors import ModelError
from labelsieve.fleet import MODEL_INFO, is_url

__all__ = ["INT8_FILE", "FastDetectorConfig", "FastModel", "OnnxModel", "letterbox", "load_model", "model_info",
           "pick_model_file"]

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".pt")
INT8_FILE = "model.int8.onnx"  # written by `labelsieve train --int8` (labelsieve.train.quantize)
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
    #: The model directory's model.json ({} for a bare file): id, dataset version, classes, metrics.
    info: dict[str, Any]

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int,
               where: str = "image") -> Detections:
        """Boxes in `image`'s pixels; `image` may be lazily opened (`images.open_checked`), and decoding errors name
        `where`."""


def _names(raw: Any) -> tuple[str, ...]:
    """ultralytics stores names as a dict {id: name} (a Python literal in ONNX metadata)."""
    names = ast.literal_eval(raw) if isinstance(raw, str) else raw
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(map(str, names))


def letterbox(image: Image.Image, size: tuple[int, int],
              where: str = "image") -> tuple[npt.NDArray[np.float32], float, tuple[float, float]]:
    """ultralytics' letterbox in numpy: scale to fit, pad evenly with grey 114. -> (1x3xHxW in [0, 1], scale, pad).

    `image` may be lazily opened (`images.open_checked`): a JPEG is then decoded at the reduced scale the model needs,
    and the pixels go from the resized image into the tensor in one scaling pass, with no intermediate canvas."""
    height, width = size
    scale = min(height / image.height, width / image.width)
    new_w, new_h = round(image.width * scale), round(image.height * scale)
    pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    image = images.load(image, where=where, size=(new_w, new_h))
    if image.size != (new_w, new_h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    pixels = np.asarray(image)[..., :3].transpose(2, 0, 1)  # a view: RGBX drops its fourth byte here, uncopied
    tensor = np.full((1, 3, height, width), 114 / 255, np.float32)
    np.multiply(pixels, np.float32(1 / 255), out=tensor[0, :, top : top + new_h, left : left + new_w])
    return tensor, scale, (left, top)


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
    xyxy = ((xyxy - np.array([pad[0], pad[1], pad[0], pad[1]], np.float32)) / scale).astype(np.float32)
    labels = np.array(names, dtype=np.str_)[class_ids] if len(keep) else np.zeros(0, np.str_)
    dets = Detections(xyxy, best[keep], labels, classes=names).nms(iou)
    return dets[: max_detections].clip(*image_size)


def _providers(path: Path, device: str, available: list[str]) -> list[str]:
    """TensorRT, then CUDA, where onnxruntime has them (the `[gpu]` extra, onnxruntime-gpu) and `device` allows; the CPU
    always last, as the fallback for operators a GPU provider lacks."""
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if device == "cuda" and not gpu:
        raise ModelError(f"{path}: device 'cuda' was requested but onnxruntime has no CUDA provider "
                         f"(available: {', '.join(available)}); install labelsieve[gpu] (onnxruntime-gpu in place of "
                         "onnxruntime) or set device to 'cpu'")
    return [*(gpu if device != "cpu" else []), "CPUExecutionProvider"]


def _threads() -> int:
    """The cores this process may run on (a container's or taskset's share), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxModel:
    """onnxruntime session over an ultralytics ONNX export; class names and input size from its metadata.

    The session runs every graph optimization, one intra-op thread per available core (spinning 20 us at most) and the memory
    arena; on a GPU provider, an IO binding hands the input over and keeps the output on the device until the one copy
    back. A model must answer a frame with a head of 4 + classes channels before it is accepted: one that loads but
    cannot run (an identity graph, a uint8 input, fewer outputs than classes) is a ModelError here, never a failing call
    later."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1  # one graph at a time per call; concurrent calls bring their own threads
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        # Intra-op threads spin only briefly between a run's parallel sections, and stop when the run returns: a robot's
        # cores are shared (viam-server, capture, the camera, the reply's two hops), and threads spinning on them fight
        # that work. yolo11n at 320 px through the module on 2 cores: not spinning 24 ms a frame quiet / 30 busy (one
        # core taken by another process); spinning as long as ORT's default 23 / 47; 20 us, stopped at return 21 / 31.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.spin_duration_us", "20")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        providers = _providers(path, device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types, not exported
            raise ModelError(f"{path}: onnxruntime could not load it: {exc}") from exc
        self.provider = self.session.get_providers()[0]
        log.info("%s: onnxruntime %s runs it on %s (%d threads)", path.name, ort.__version__, self.provider,
                 options.intra_op_num_threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        labels = path.parent / "labels.txt"  # a Viam ML model package's class list, one per line in class-id order
        if "names" in meta:
            self.names = _names(meta["names"])
        elif labels.is_file():
            self.names = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
        else:
            raise ModelError(f"{path}: no class names in the ONNX metadata and no labels.txt beside it; export it with "
                             "ultralytics (`labelsieve train` or `yolo export format=onnx`)")
        self.info: dict[str, Any] = {}
        if meta.get("end2end") == "True":
            raise ModelError(f"{path}: end-to-end (NMS-free) exports are not supported; export with nms=False")
        (model_input,) = self.session.get_inputs()[:1]
        if model_input.type != "tensor(float)" or len(model_input.shape) != 4:
            raise ModelError(f"{path}: its input is a {model_input.type} of shape {model_input.shape}, not the float "
                             "1x3xHxW frame of an ultralytics YOLO export")
        shape = model_input.shape
        size = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        self.input_size = (shape[2], shape[3]) if isinstance(shape[2], int) else (int(size[0]), int(size[1]))
        self.input_name, self.output_name = model_input.name, self.session.get_outputs()[0].name
        self.on_gpu = self.provider != "CPUExecutionProvider"
        self._check(path)

    def _check(self, path: Path) -> None:
        try:
            output = self.run(np.full((1, 3, *self.input_size), 114 / 255, np.float32))
        except Exception as exc:  # whatever onnxruntime raises for a graph that cannot run
            raise ModelError(f"{path}: loads but fails on a frame: {exc}") from exc
        channels = 4 + len(self.names)
        if output.ndim != 3 or output.shape[:2] != (1, channels):
            raise ModelError(f"{path}: answers a frame with shape {output.shape}, but a YOLO head for its "
                             f"{len(self.names)} classes {list(self.names)} gives (1, {channels}, anchors)")

    def run(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The raw head output for a letterboxed tensor: the model alone, as the benchmark times it."""
        if self.on_gpu:
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, tensor)
            binding.bind_output(self.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            output: npt.NDArray[np.float32] = binding.copy_outputs_to_cpu()[0]
            return output
        (output,) = self.session.run([self.output_name], {self.input_name: tensor})
        return output

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int,
               where: str = "image") -> Detections:
        original = image.size  # before a reduced-scale JPEG decode changes it
        tensor, scale, pad = letterbox(image, self.input_size, where)
        return decode_yolo(self.run(tensor), self.names, confidence, iou, max_detections, scale, pad, original)


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
        self.info: dict[str, Any] = {}
        self.device = None if device == "auto" else device
        self._lock = threading.Lock()  # an ultralytics predictor is not safe to share between threads

    def detect(self, image: Image.Image, confidence: float, iou: float, max_detections: int,
               where: str = "image") -> Detections:
        image = images.load(image, where=where)
        with self._lock:
            (result,) = self.model.predict(image, conf=confidence, iou=iou, max_det=max_detections,
                                           device=self.device, verbose=False)
        boxes = result.boxes
        return Detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                          np.array(self.names, dtype=np.str_)[boxes.cls.cpu().numpy().astype(int)], classes=self.names)


def pick_model_file(path: Path) -> Path:
    """A model file as it is; in a directory `model.int8.onnx`, `model.onnx`, then `model.pt`, then a single .onnx or
    .pt."""
    if path.is_file():
        return path
    for candidate in (path / INT8_FILE, path / "model.onnx", path / "model.pt"):
        if candidate.is_file():
            return candidate
    for suffix in MODEL_SUFFIXES:
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) == 1:
            return found[0]
    raise ModelError(f"{path}: no model.onnx or model.pt (nor a single .onnx or .pt file) in this directory")


def model_info(file: Path) -> dict[str, Any]:
    """The model.json beside a model file ({} when there is none)."""
    path = file.parent / MODEL_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(info, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def load_model(path: Path, device: str = "auto") -> FastModel:
    """The model file `path` names, loaded, run once, and checked against its model.json's classes."""
    file = pick_model_file(path)
    info = model_info(file)
    model: FastModel
    if file.suffix == ".onnx":
        model = OnnxModel(file, device)
    elif file.suffix == ".pt":
        model = UltralyticsModel(file, device)
    else:
        raise ModelError(f"{file}: not a .onnx or .pt model")
    if "classes" in info and list(info["classes"]) != list(model.names):
        raise ModelError(f"{file}: model.json names the classes {info['classes']}, the model itself "
                         f"{list(model.names)}; a consumer would read wrong labels")
    model.info = info
    return model
