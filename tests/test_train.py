"""`labelsieve train` on a tiny synthetic dataset: 64 px frames, yolo11n from scratch, a few epochs, offline.

`trained_model` trains once per session; the fast-detector and deploy tests import it from here."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelsieve.dataset import build_dataset
from test_dataset import write_scenes

_TRAINED: dict[str, Path] = {}


def train_tiny(root: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """(model directory, the CLI's stdout) for a 3-epoch yolo11n on 24 scenes of 3 frames at 64 px."""
    write_scenes(root / "capture", range(24))
    build_dataset([str(root / "capture")], root / "dataset", progress=False)
    run = subprocess.run([sys.executable, "-m", "labelsieve", "train", str(root / "dataset"), "--epochs", "3",
                          "--imgsz", "64", "--batch", "16", "--workers", "0", "--device", "cpu", "--out",
                          str(root / "models")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return Path(run.stdout.strip().splitlines()[-1]), run.stdout


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained model directory for the whole session (read-only: copy it before changing anything)."""
    if "dir" not in _TRAINED:
        root = tmp_path_factory.mktemp("trained")
        env = {"LABELSIEVE_HOME": str(root / "home"), "YOLO_CONFIG_DIR": "", "YOLO_OFFLINE": ""}  # train sets them
        _TRAINED["dir"], _ = train_tiny(root, env)
        _TRAINED["home"] = root / "home"
    return _TRAINED["dir"]


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
    font = _TRAINED["home"] / "ultralytics" / "Ultralytics" / "Arial.ttf"
    assert font.is_file()  # seeded in labelsieve's own config dir, so ultralytics never downloads it
