"""`labelsieve train --int8`'s step: a statically quantized ONNX model calibrated on the train split, its held-out
scores recorded next to the float model's, served by the fast detector and compared by the promotion gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelsieve.dataset import open_dataset
from labelsieve.detect.fast import INT8_FILE, OnnxModel, load_model, pick_model_file
from labelsieve.train.quantize import quantize_int8
from labelsieve.train.trainer import SCORE, held_out_score


@pytest.fixture(scope="module")
def quantized(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A copy of the trained model directory after `quantize_int8`, and the entry it returned (read-only: copy it
    before changing anything)."""
    model_dir = tmp_path_factory.mktemp("quantized") / "model"
    shutil.copytree(trained_model, model_dir)
    return model_dir, quantize_int8(model_dir, frames=16, device="cpu")


def test_int8_model_is_scored_beside_the_float_one_and_served(trained_model: Path, quantized: tuple[Path, dict[str, Any]],
                                                              tmp_path: Path) -> None:
    float_id = json.loads((trained_model / "model.json").read_text())["id"]
    model_dir, entry = tmp_path / "model", quantized[1]
    shutil.copytree(quantized[0], model_dir)
    info = json.loads((model_dir / "model.json").read_text())
    assert info["int8"] == entry and entry["file"] == INT8_FILE
    assert entry["float_id"] == float_id != info["id"]  # the id names the served model, now the int8 one
    assert SCORE in entry["metrics"] and SCORE in entry["float_metrics"]
    assert entry["calibration"] == {"split": "train", "frames": 16}
    assert pick_model_file(model_dir) == model_dir / INT8_FILE
    served = load_model(model_dir, "cpu")
    assert isinstance(served, OnnxModel) and served.names == ("blue", "red") and served.info["int8"] == entry
    info["int8"]["metrics"][SCORE] = 0.75  # the gate reads the int8 number, not the float one
    (model_dir / "model.json").write_text(json.dumps(info))
    assert held_out_score(model_dir, open_dataset(info["dataset"]["path"])) == 0.75


def test_int8_runs_on_qlinear_operators_with_the_head_decoding_in_float(quantized: tuple[Path, dict[str, Any]]) -> None:
    """The network runs on onnxruntime's QLinear operators (quantizing only the convolutions left it as slow as float);
    the head's decoding, which puts box pixels beside class scores in [0, 1], stays float, and the boxes come out as the
    float model's to a pixel."""
    from onnx import load

    from labelsieve import images
    from labelsieve.detect.fast import letterbox
    from support.media import encode
    from support.scenes import scene_frames

    model_dir = quantized[0]
    ops = [(node.name, node.op_type) for node in load(str(model_dir / INT8_FILE)).graph.node]
    assert sum(op == "QLinearConv" for _, op in ops) > 80 and sum(op == "Conv" for _, op in ops) == 1  # the DFL's
    decoding = [op for name, op in ops if name.startswith("/model.23/") and "/cv" not in name]
    assert {"Sigmoid", "Softmax", "Concat"} <= set(decoding) and not any(op.startswith("QLinear") for op in decoding)
    floating, int8 = OnnxModel(model_dir / "model.onnx", "cpu"), OnnxModel(model_dir / INT8_FILE, "cpu")
    tensor = letterbox(images.open_checked(encode(scene_frames(7, 1, 64)[0][0])), floating.input_size)[0]
    assert np.abs(floating.run(tensor)[0, :4] - int8.run(tensor)[0, :4]).max() <= 1.0
