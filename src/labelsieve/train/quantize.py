"""int8 for the fast detector on CPUs: static quantization of a model directory's `model.onnx` with onnxruntime.

Calibration frames come from the training split of the dataset version the model learned from, letterboxed exactly as
the detector feeds them. The whole network runs in int8 (onnxruntime's QLinear operators, weights per channel), the
activations between convolutions too: quantizing only the convolutions left a dequantize and a quantize around every
SiLU, and yolo11n at 320 px on 2 cores ran 1.0x float32, against 1.55x this way. The head's decoding stays float (the
DFL, the concat of box coordinates in pixels with class scores in [0, 1]: one 8-bit scale for both would erase the
scores). Both models are then scored on the held-out (val) split with the validator training uses, and model.json
records the two side by side:

    "int8": {"file": "model.int8.onnx", "metrics": {...int8...}, "float_metrics": {...model.onnx...},
             "calibration": {"split": "train", "frames": 64}, "float_id": "<model.onnx's id>"}

and the directory's `id` becomes the int8 model's (the id names what is served).

A directory with `model.int8.onnx` serves it (`labelsieve.detect.fast.pick_model_file`), so the promotion gate compares
the int8 numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labelsieve import images
from labelsieve.dataset import open_dataset
from labelsieve.detect.fast import INT8_FILE, OnnxModel, letterbox
from labelsieve.errors import InputError, ModelError
from labelsieve.files import write_atomic
from labelsieve.fleet import MODEL_INFO
from labelsieve.train.trainer import evaluate, load_model_info

__all__ = ["quantize_int8", "quantize_onnx"]

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class _Calibration:
    """onnxruntime's CalibrationDataReader: one letterboxed frame per `get_next`, None when done."""

    def __init__(self, input_name: str, tensors: Iterator[npt.NDArray[np.float32]]) -> None:
        self.input_name, self.tensors = input_name, tensors

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        tensor = next(self.tensors, None)
        return None if tensor is None else {self.input_name: tensor}


def _frames(folder: Path, size: tuple[int, int], limit: int) -> Iterator[npt.NDArray[np.float32]]:
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)[:limit]:
        yield letterbox(images.open_checked(path.read_bytes(), where=str(path)), size, str(path))[0]


def _decoding(source: Path, nodes: list[str]) -> list[str]:
    """The detect head's decoding in an ultralytics export: the last module's nodes outside its box (cv2) and class (cv3)
    branches."""
    modules = [int(m.group(1)) for name in nodes if (m := re.match(r"/model\.(\d+)/", name))]
    if not modules:
        raise ModelError(f"{source}: no /model.N/ node names, so not an ultralytics YOLO export; its head's decoding "
                         "cannot be told apart to keep it float")
    head = f"/model.{max(modules)}/"
    return [name for name in nodes if name.startswith(head) and not name.startswith((f"{head}cv2.", f"{head}cv3."))]


def quantize_onnx(source: Path, target: Path, calibration: Iterable[npt.NDArray[np.float32]]) -> OnnxModel:
    """`source` quantized to int8 at `target`, calibrated on letterboxed frames; returns it loaded (so checked: it
    answers a frame with the right head)."""
    from onnx import load, save
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = OnnxModel(source, "cpu").input_name
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as scratch:
        prepared, staged = Path(scratch) / "prepared.onnx", Path(scratch) / target.name
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        keep_float = _decoding(source, [n.name for n in load(str(prepared)).graph.node])
        quantize_static(str(prepared), str(staged), _Calibration(input_name, iter(calibration)),
                        quant_format=QuantFormat.QOperator, nodes_to_exclude=keep_float, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        quantized = load(str(staged))
        del quantized.metadata_props[:]  # the export's names, imgsz, stride: what the detector and ultralytics read
        quantized.metadata_props.extend(load(str(source)).metadata_props)
        save(quantized, str(staged))
        try:
            model = OnnxModel(staged, "cpu")
        except ModelError as exc:
            raise ModelError(f"{source}: its int8 model does not run: {exc}") from exc
        staged.replace(target)
    return model


def quantize_int8(model_dir: Path, frames: int = 64, device: str | None = None) -> dict[str, Any]:
    """Write `model_dir/model.int8.onnx`, score it and model.onnx on the val split, record both in model.json; returns
    the `int8` entry."""
    info = load_model_info(model_dir)
    version = open_dataset(info["dataset"]["path"])
    train_images = version.path / "images" / "train"
    if not train_images.is_dir():
        raise InputError(f"{version.path}: no images/train folder to calibrate with")
    source, target = model_dir / "model.onnx", model_dir / INT8_FILE
    size = OnnxModel(source, "cpu").input_size
    calibration = list(_frames(train_images, size, frames))
    if not calibration:
        raise InputError(f"{train_images}: no training images to calibrate with")
    staged = model_dir / f".{INT8_FILE}"  # scored before it takes the name the detector serves
    try:
        quantize_onnx(source, staged, calibration)
        imgsz = int(info.get("imgsz", size[0]))
        entry = {"file": INT8_FILE, "metrics": evaluate(staged, version, imgsz, device),
                 "float_metrics": evaluate(source, version, imgsz, device),
                 "calibration": {"split": "train", "frames": len(calibration)},
                 "float_id": info.get("int8", {}).get("float_id", info["id"])}
        served_id = hashlib.sha256(staged.read_bytes()).hexdigest()[:16]
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)
    # The id names what the directory serves, its int8 model now: a fleet refuses to republish an id with other content.
    write_atomic(model_dir / MODEL_INFO, json.dumps({**info, "id": served_id, "int8": entry}, indent=2))
    log.info("%s: int8 %s vs float %s on the val split", model_dir, entry["metrics"], entry["float_metrics"])
    return entry
