"""`labelsieve train` on a tiny synthetic dataset: 64 px frames, yolo11n from scratch, a few epochs, offline.
`trained_model` (tests/conftest.py) trains once per session and is shared with the fast-detector and deploy tests."""

from __future__ import annotations

import ast
import json
from pathlib import Path


def test_train_writes_a_versioned_model_directory(trained_model: Path) -> None:
    assert trained_model.name == "v1" and trained_model.parent.name == "models"
    info = json.loads((trained_model / "model.json").read_text())
    dataset = json.loads((Path(info["dataset"]["path"]) / "version.json").read_text())
    assert info["dataset"]["id"] == dataset["id"] and info["classes"] == dataset["classes"]
    assert info["command"].startswith("labelsieve train ") and "--epochs 3" in info["command"]
    assert {"mAP50-95", "mAP50", "precision", "recall"} <= set(info["metrics"])
    assert (trained_model / "model.pt").is_file() and (trained_model / "plots" / "results.csv").is_file()
    assert not list(trained_model.parent.glob(".training-*"))

    import onnxruntime

    meta = onnxruntime.InferenceSession(str(trained_model / "model.onnx")).get_modelmeta().custom_metadata_map
    assert list(ast.literal_eval(meta["names"]).values()) == info["classes"]
    font = trained_model.parent.parent / "home" / "ultralytics" / "Ultralytics" / "Arial.ttf"
    assert font.is_file()  # seeded in labelsieve's own config dir, so ultralytics never downloads it
