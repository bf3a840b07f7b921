"""The registry package: `make module` builds what the Viam registry takes (meta.json's `build`), nothing machine-specific
in it; its first_run fails fast with a clear message where it cannot set up; its entrypoint, started as viam-server starts
a registry module, serves every model meta.json lists."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import ROOT, Machine

MANIFEST = json.loads((ROOT / "meta.json").read_text())


@pytest.fixture(scope="module")
def tarball() -> Path:
    subprocess.run(["make", "-s", "module"], cwd=ROOT, check=True, timeout=120)
    return ROOT / MANIFEST["build"]["path"]


@pytest.fixture()
def package(tarball: Path, tmp_path: Path) -> Path:
    """The tarball unpacked into an empty folder, as viam-server unpacks a registry module."""
    folder = tmp_path / "unpacked"
    folder.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(folder, filter="data")
    return folder


def test_the_package_holds_the_module_and_nothing_machine_specific(package: Path) -> None:
    names = {p.relative_to(package).as_posix() for p in package.rglob("*")}
    assert {"meta.json", "setup.sh", "pyproject.toml", "src/labelsieve/__init__.py", "modules/run.sh"} <= names
    assert not [n for n in names if n.startswith((".venv", ".git")) or "__pycache__" in n or n.endswith(".pyc")]
    for step in ("entrypoint", "first_run"):
        assert os.access(package / MANIFEST[step], os.X_OK), step


def run_first_run(package: Path, env: dict[str, str], manifest: dict[str, str] = MANIFEST,
                  *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(package / manifest["first_run"]), *args], cwd=package, capture_output=True, text=True,
                          timeout=600, env=env)


def test_first_run_says_so_at_once_without_python_3_11(package: Path, tmp_path: Path) -> None:
    tools = tmp_path / "bin"  # a machine whose only python3 is 3.9
    tools.mkdir()
    for tool in ("bash", "dirname"):
        (tools / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    fake = tools / "python3"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.2' || echo False\n")
    fake.chmod(0o755)
    result = run_first_run(package, {"PATH": str(tools)}, MANIFEST, "light")
    assert result.returncode == 1
    assert "labelsieve setup: needs Python 3.11 (found: Python 3.9.2)" in result.stderr and "apt install" in result.stderr
    assert not (package / ".venv").exists()


def test_first_run_says_so_at_once_without_a_package_index(package: Path, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1",
           "PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple"}
    result = run_first_run(package, env, MANIFEST, "light")
    assert result.returncode == 1
    assert "labelsieve setup: installing the Python packages failed" in result.stderr
    assert "PIP_FIND_LINKS" in result.stderr  # how to install offline


def test_the_entrypoint_serves_every_model_as_viam_server_starts_it(package: Path, tmp_path: Path) -> None:
    config = {"modules": [{"type": "local", "name": "labelsieve", "executable_path": str(package / MANIFEST["entrypoint"])}]}
    env = {"LABELSIEVE_PYTHON": sys.executable, "PYTHONPATH": str(package / "src")}  # the package's own code
    with Machine(config, tmp_path, env=env) as machine:
        machine.wait_for_log("module 'labelsieve' ready")
    served = next(line for line in machine.lines if "module 'labelsieve' ready" in line)
    for model in MANIFEST["models"]:
        assert f"{model['model']} ({model['api']})" in served


def test_the_light_module_sets_itself_up_and_serves_without_torch(package: Path, tmp_path: Path) -> None:
    """The fast detector's own registry module (what a robot that only runs a trained model installs): its first_run
    builds a .venv with the light set from the package index, and its entrypoint answers Ready from that .venv."""
    light = json.loads((package / "modules/fast_detector/meta.json").read_text())
    result = run_first_run(package, dict(os.environ), light)
    assert result.returncode == 0, result.stderr[-3000:]
    venv_python = package / ".venv" / "bin" / "python"
    has_torch = subprocess.run([str(venv_python), "-c", "import importlib.util as u; print(u.find_spec('torch') is not None)"],
                               capture_output=True, text=True, timeout=60).stdout.strip()
    assert has_torch == "False"
    config = {"modules": [{"type": "local", "name": "fast", "executable_path": str(package / light["entrypoint"])}]}
    with Machine(config, tmp_path, env={"LABELSIEVE_PYTHON": ""}) as machine:  # the package's own .venv, nothing else
        machine.wait_for_log("module 'fast' ready")
    served = next(line for line in machine.lines if "module 'fast' ready" in line)
    assert all(f"{m['model']} ({m['api']})" in served for m in light["models"])
