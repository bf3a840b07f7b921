"""`labelsieve train` on a tiny synthetic dataset: 64 px frames, yolo11n from scratch, a few epochs, offline.
`trained_model` (tests/conftest.py) trains once per session and is shared with the fast-detector and deploy tests."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image


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


def test_train_prints_a_bar_and_a_summary_and_logs_ultralytics_to_a_file(trained_model: Path) -> None:
    root = trained_model.parent.parent
    stdout, stderr = (root / "train.stdout").read_text(), (root / "train.stderr").read_text()
    assert stdout.splitlines()[-1] == str(trained_model)
    assert f"model v1 ({json.loads((trained_model / 'model.json').read_text())['id']})" in stdout
    assert "mAP50-95" in stdout and f"labelsieve predict {trained_model}" in stdout
    assert ".training-" not in stdout + stderr  # no hint naming the staging folder, which is gone
    assert "Ultralytics" not in stdout + stderr and "\x1b[" not in stdout + stderr
    assert "3/3" in stderr.replace("\r", "\n")  # labelsieve's own per-epoch bar
    log = (trained_model / "train.log").read_text()
    assert "Ultralytics" in log and "\x1b[" not in log and "ONNX" in log


def test_predict_draws_the_models_boxes_on_pictures(trained_model: Path, tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i, color in enumerate(("red", "blue")):
        Image.new("RGB", (64, 64), color).save(pictures / f"{i}.jpg")
    (pictures / "broken.jpg").write_bytes(b"not a picture")
    run = subprocess.run([sys.executable, "-m", "labelsieve", "predict", str(trained_model), str(pictures), "--out",
                          str(tmp_path / "drawn"), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 1 and len(lines) == 3, run.stdout + run.stderr  # one line per picture; the broken one named
    assert any("broken.jpg: skipped" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["0.jpg", "1.jpg"]
    assert all(" boxes" in line for line in lines if "broken" not in line)
