"""`labelsieve train --int8`'s step: a statically quantized ONNX model calibrated on the train split, its held-out
scores recorded next to the float model's, served by the fast detector and compared by the promotion gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from labelsieve.dataset import open_dataset
from labelsieve.detect.fast import INT8_FILE, OnnxModel, load_model, pick_model_file
from labelsieve.train.quantize import quantize_int8
from labelsieve.train.trainer import SCORE, held_out_score


def test_int8_model_is_scored_beside_the_float_one_and_served(trained_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    float_id = json.loads((model_dir / "model.json").read_text())["id"]
    entry = quantize_int8(model_dir, frames=16, device="cpu")
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
