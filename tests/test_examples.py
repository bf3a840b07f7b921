"""The shipped example configs and entry points work as a user would run them."""

from __future__ import annotations

import asyncio
import json
import os
import re
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


def validate(config: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([sys.executable, "-m", "labelsieve", "validate", str(config), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, env={**clean, **env})


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_config_validates_as_shipped(config: Path, tmp_path: Path) -> None:
    """Only the OpenAI config needs something from the user (its key), and it says which."""
    needs_key = "${environment.OPENAI_API_KEY}" in config.read_text()
    result = validate(config, tmp_path)
    if needs_key:
        assert result.returncode == 2 and "OPENAI_API_KEY is not set" in result.stderr, result.stderr
        result = validate(config, tmp_path, OPENAI_API_KEY="sk-placeholder")
    assert result.returncode == 0, result.stderr
    assert "valid (" in result.stdout


def test_the_shipped_configs_cover_local_and_openai_labeling_and_a_robot() -> None:
    models = {c.name: {r["model"]: r.get("attributes", {}) for r in json.loads(c.read_text()).get("services", [])}
              for c in CONFIGS}
    verifiers = [m["labelsieve:vision:vlm-verifier"].get("backend") for m in models.values()
                 if "labelsieve:vision:vlm-verifier" in m]
    assert {"openai", "transformers"} <= set(verifiers)
    assert any("labelsieve:vision:fast-detector" in m for m in models.values())
    for config in CONFIGS:  # nothing writes into configs/: storage paths are absolute, URLs or left to the default
        for resource in json.loads(config.read_text()).get("services", []):
            for key in ("capture_dir", "sync_url"):
                value = resource.get("attributes", {}).get(key)
                assert value is None or "://" in value or Path(value).expanduser().is_absolute(), (config.name, key)


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
    assert not noise(machine.log), noise(machine.log)


def noise(log: str, expected: str = "\x00") -> list[str]:
    """WARNING and ERROR lines of a run that went as it should (a clean run has none), but for an `expected` one."""
    return [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line) and expected not in line]


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
    assert not noise(result.stderr, expected="NO NETWORK AND NO CACHED WEIGHTS"), result.stderr[-5000:]
    assert "frames seen 6," in result.stdout and "the deployed fast detector answered through the runtime" in result.stdout
    assert "second round, the deployed detector as the student: 6 frames, teacher calls" in result.stdout
    assert list((tmp_path / "run" / "synced").rglob("*.capture")) and (tmp_path / "run" / "models" / "v1" / "model.onnx").is_file()
    machine = json.loads((tmp_path / "run" / "machine.json").read_text())
    assert any(s["name"] == "fast" for s in machine["services"])  # deployed into the running machine's config


def test_the_readme_names_only_paths_and_verbs_that_exist() -> None:
    from labelsieve.cli import parser

    readme = (ROOT / "README.md").read_text()
    paths = set(re.findall(r"(?<![\w/.~])((?:configs|modules|bench|src/labelsieve)/[\w./-]*[\w/])", readme))
    for row in re.findall(r"^\| `(configs/|bench/|modules/)` \|(.*)$", readme, re.MULTILINE):  # "`configs/` | `x.json` ..."
        paths |= {row[0] + name for name in re.findall(r"`([\w.-]+\.(?:json|py))`", row[1])}
    missing = sorted(p for p in paths if "<" not in p and not (ROOT / p).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"
    verbs = set(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    blocks = re.findall(r"```.*?```", readme, re.S)
    code = "\n".join(blocks + re.findall(r"`[^`\n]+`", re.sub(r"```.*?```", "", readme, flags=re.S)))
    named = set(re.findall(r"^`?labelsieve ([a-z]+)\b", code, re.MULTILINE))  # commands in code blocks and `spans`
    unknown = sorted(named - verbs)
    assert not unknown, f"the README names verbs the CLI lacks: {unknown}"
