"""`deploy --config`: concurrent deploys to one config all land (a lock around read-modify-write), `--create` writes a
config that validates (the module serving the fast detector, and `camera_name` when there is one camera)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from support import ROOT

from labelsieve.train.deploy import deploy_to_config


def model_dir(folder: Path) -> Path:
    """A model directory as far as deploy_to_config reads it (no weights are loaded); its dataset is absent, so the
    promotion gate can only be forced."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"")
    (folder / "model.json").write_text(json.dumps({"id": folder.name, "classes": ["a"], "metrics": {},
                                                   "dataset": {"id": "x", "name": "v1", "path": str(folder / "gone")}}))
    return folder


def _deploy(model: Path, config: Path, service: str, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    deploy_to_config(model, config, service, force=True)


def test_concurrent_deploys_to_one_config_lose_nothing(tmp_path: Path) -> None:
    services = [f"fast{i}" for i in range(6)]
    config = tmp_path / "machine.json"
    config.write_text(json.dumps({"modules": [{"type": "local", "name": "fast-detector", "executable_path":
                                               str(ROOT / "modules/fast_detector/run.sh")}],
                                  "services": [{"name": s, "api": "rdk:service:vision",
                                                "model": "labelsieve:vision:fast-detector", "attributes": {}}
                                               for s in services]}))
    forked = multiprocessing.get_context("fork")
    for round_ in range(5):
        models = {s: model_dir(tmp_path / f"r{round_}-{s}") for s in services}
        start = forked.Barrier(len(services))
        workers = [forked.Process(target=_deploy, args=(models[s], config, s, start)) for s in services]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        written = {s["name"]: s["attributes"].get("model_path") for s in json.loads(config.read_text())["services"]}
        assert written == {s: str(models[s]) for s in services}, f"round {round_}: an edit was lost"
    assert not list(tmp_path.glob("*.lock"))


def test_create_adds_the_module_and_the_camera_and_validates(tmp_path: Path) -> None:
    camera = json.loads((ROOT / "configs/camera.json").read_text())
    camera["modules"][0]["executable_path"] = str(ROOT / "modules/media_camera/run.sh")
    camera["components"][0]["attributes"]["source"] = str(ROOT / "configs/samples")
    camera["modules"][0]["env"] = {"KEY": "${environment.LABELSIEVE_ROBOTS_OWN}"}  # set on the robot, not here
    config = tmp_path / "machine.json"
    config.write_text(json.dumps(camera))
    model = model_dir(tmp_path / "v1")
    run = subprocess.run([sys.executable, "-m", "labelsieve", "deploy", str(model), "--config", str(config), "--service",
                          "fast", "--create"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert run.returncode == 0, run.stderr
    machine = json.loads(config.read_text())
    fast = next(s for s in machine["services"] if s["name"] == "fast")
    assert fast["attributes"] == {"camera_name": "cam", "model_path": str(model)}
    assert any(m["executable_path"].endswith("fast_detector/run.sh") for m in machine["modules"])
    valid = subprocess.run([sys.executable, "-m", "labelsieve", "validate", str(config), "--data-dir", str(tmp_path / "h")],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "LABELSIEVE_ROBOTS_OWN": "k"})
    assert valid.returncode == 0, valid.stdout + valid.stderr
