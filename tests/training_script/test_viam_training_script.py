"""The Viam custom training script (training_script/), run as Viam runs it: `python3 -m model.training --dataset_file=...
--model_output_directory=... --key=value` from the dataset's folder, on a dataset.jsonl labelsieve exported. Under Python
3.10 (Viam's container) with a stand-in for ultralytics (no torch for 3.10 here); under 3.11 for real, and its output
served by the fast detector through the runtime as a registry package (`${packages.ml_model.NAME}`)."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import Machine, connect, module
from support.machine import ROOT
from support.media import encode
from support.scenes import scene_frames, write_scenes
from viam.media.video import ViamImage
from viam.services.vision import VisionClient

from labelsieve.cloud.jsonl import export_viam
from labelsieve.dataset import build_dataset

SCRIPT = ROOT / "training_script"
FAKE = Path(__file__).parent / "fake_ultralytics"


def _python310() -> str | None:
    """Python 3.10: $LABELSIEVE_PYTHON310, pyenv's (its shim on PATH refuses to run a version not selected), or PATH's."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    return os.environ.get("LABELSIEVE_PYTHON310") or (pyenv[-1] if pyenv else shutil.which("python3.10"))


def _export(tmp: Path, scenes: int) -> Path:
    write_scenes(tmp / "capture", range(scenes))
    version = build_dataset([str(tmp / "capture")], tmp / "ds", progress=False).version
    return export_viam(version, tmp / "export", progress=False)


def _train(python: str, jsonl: Path, out: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "model.training", f"--dataset_file={jsonl}", f"--model_output_directory={out}",
                           *args], cwd=jsonl.parent, env=env, capture_output=True, text=True, timeout=600)


def test_under_python_310_the_script_reads_the_jsonl_and_lays_out_yolo(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 (set LABELSIEVE_PYTHON310): Viam's training container runs 3.10")
    monkeypatch.setenv("LABELSIEVE_HOME", str(tmp_path / "home"))
    jsonl = _export(tmp_path, 5)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{SCRIPT}{os.pathsep}{FAKE}",
           "FAKE_ULTRALYTICS_SEEN": str(tmp_path / "seen")}
    run = _train(python, jsonl, tmp_path / "out", "--epochs=7", "--imgsz=64", "--labels=red blue", env=env)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.txt", "model.json", "model.onnx"]
    assert (tmp_path / "out" / "labels.txt").read_text() == "red\nblue\n"  # --labels sets the class order
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["classes"] == ["red", "blue"] and info["epochs"] == 7 and info["imgsz"] == 64
    seen = tmp_path / "seen"
    settings = json.loads((seen / "settings.json").read_text())
    assert settings["epochs"] == 7 and settings["imgsz"] == 64 and settings["model"] == "yolo11n.pt"
    labels = sorted((seen / "labels").rglob("*.txt"))
    assert len(labels) == len(lines) == len(list((seen / "images").rglob("*.jpg")))
    assert list((seen / "images" / "val").iterdir())
    rows = [row.split() for p in labels for row in p.read_text().splitlines()]
    assert len(rows) == sum(len(line["bounding_box_annotations"]) for line in lines)
    assert {row[0] for row in rows} <= {"0", "1"} and all(0 < float(v) <= 1 for row in rows for v in row[1:])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_path": "nowhere.jpg"}\n')
    refused = _train(python, bad, tmp_path / "out2", env=env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "nowhere.jpg" in refused.stderr


def test_trained_in_viams_way_served_from_a_registry_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labelsieve.train.offline import ultralytics_offline

    monkeypatch.setenv("LABELSIEVE_HOME", str(tmp_path / "home"))
    jsonl = _export(tmp_path, 8)
    ultralytics_offline(tmp_path / "ultralytics")  # fonts in place, nothing downloaded (Viam's container may download)
    package = tmp_path / "packages" / "data" / "ml_model" / "org-1-glasses-2"
    env = {**os.environ, "PYTHONPATH": str(SCRIPT)}
    run = _train(sys.executable, jsonl, package, "--model=yolo11n.yaml", "--epochs=1", "--imgsz=64", "--batch=8",
                 "--workers=0", "--device=cpu", env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (package / "labels.txt").read_text().split() == json.loads((package / "model.json").read_text())["classes"]

    config = {"packages": [{"name": "glasses", "package": "org-1/glasses", "type": "ml_model", "version": "2"}],
              "modules": [module("fast-detector")],
              "services": [{"name": "fast", "api": "rdk:service:vision", "model": "labelsieve:vision:fast-detector",
                            "attributes": {"model_path": "${packages.ml_model.glasses}", "confidence": 0.001}}]}
    with Machine(config, tmp_path, args=("--packages-dir", str(tmp_path / "packages"))) as machine:
        async def detect() -> None:
            robot = await connect(machine.address)
            try:
                fast = VisionClient.from_robot(robot, "fast")
                status = await fast.do_command({"status": {}})
                assert status["classes"] == (package / "labels.txt").read_text().split()
                found = await fast.get_detections(ViamImage(encode(scene_frames(3, 1)[0][0]), "image/jpeg"))
                assert found and {d.class_name for d in found} <= set(status["classes"])
            finally:
                await robot.close()
        asyncio.run(detect())


def test_labels_txt_names_the_classes_of_an_onnx_without_them(trained_model: Path, tmp_path: Path) -> None:
    import onnx

    from labelsieve.detect.fast import OnnxModel

    model = onnx.load(str(trained_model / "model.onnx"))
    kept = [p for p in model.metadata_props if p.key != "names"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "best.onnx"))
    (tmp_path / "labels.txt").write_text("left\nright\n")
    assert OnnxModel(tmp_path / "best.onnx").names == ("left", "right")
