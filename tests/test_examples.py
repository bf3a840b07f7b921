"""The shipped example configs and entry points work as a user would run them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, Machine, connect
from viam.components.camera import Camera


def tracked_configs() -> list[Path]:
    """The example configs in the repository: tracked by git, so files other runs leave in configs/ are not picked up."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", "configs/*.json"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode()
    return [ROOT / name for name in sorted(filter(None, listed.split("\0")))]


CONFIGS = tracked_configs()


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_config_validates(config: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": "sk-placeholder"}  # configs pass keys through ${environment.X}
    result = subprocess.run([sys.executable, "-m", "labelsieve", "validate", str(config), "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "valid (" in result.stdout


def test_demo_config_serves_the_sample_images(tmp_path: Path) -> None:
    with Machine(ROOT / "configs/camera.json", tmp_path) as machine:
        async def run() -> bytes:
            robot = await connect(machine.address)
            try:
                images, _ = await Camera.from_robot(robot, "cam").get_images()
                return images[0].data
            finally:
                await robot.close()
        assert asyncio.run(run()) == (ROOT / "configs/samples/grace_hopper.jpg").read_bytes()  # passed through untouched
    assert "connect from Python" in machine.log


def test_runtime_and_model_free_modules_do_not_import_torch() -> None:
    code = (
        "import sys, importlib.util, labelsieve.runtime, labelsieve.cli\n"
        f"for main in {[str(p) for p in sorted((ROOT / 'modules').glob('*/main.py'))]!r}:\n"
        "    spec = importlib.util.spec_from_file_location('m_' + main.split('/')[-2], main)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = [m for m in ('torch', 'transformers', 'ultralytics', 'cv2') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_registry_entrypoint_serves_every_model_in_meta_json(tmp_path: Path) -> None:
    manifest = json.loads((ROOT / "meta.json").read_text())
    entrypoint = ROOT / manifest["entrypoint"]
    config = {
        "modules": [{"type": "local", "name": "labelsieve", "executable_path": str(entrypoint)}],
        "components": [{"name": "cam", "api": "rdk:component:camera", "model": "labelsieve:camera:media",
                        "attributes": {"source": str(ROOT / "configs/samples")}}],
    }
    with Machine(config, tmp_path) as machine:
        async def run() -> int:
            robot = await connect(machine.address)
            try:
                images, _ = await Camera.from_robot(robot, "cam").get_images()
                return len(images)
            finally:
                await robot.close()
        assert asyncio.run(run()) == 1
    served = next(line for line in machine.lines if "module 'labelsieve' ready" in line)
    for model in manifest["models"]:
        assert f"{model['model']} ({model['api']})" in served


def test_the_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """`make demo`'s job, small: capture through the filter, sync, dataset, training, deploy, an answer. Offline, so on
    tiny random-weight models, which it must say."""
    result = subprocess.run([sys.executable, "-m", "labelsieve", "demo", "--out", str(tmp_path / "run"), "--frames", "6",
                             "--epochs", "1", "--imgsz", "64"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NO NETWORK AND NO CACHED WEIGHTS" in result.stderr and "LABELS ARE MEANINGLESS" in result.stdout
    assert "frames seen 6," in result.stdout and "the deployed fast detector answered through the runtime" in result.stdout
    assert list((tmp_path / "run" / "synced").rglob("*.capture")) and (tmp_path / "run" / "models" / "v1" / "model.onnx").is_file()
    machine = json.loads((tmp_path / "run" / "machine.json").read_text())
    assert any(s["name"] == "fast" for s in machine["services"])  # deployed into the running machine's config
