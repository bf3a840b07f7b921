"""The demo and `deploy --create` find the module shells and the sample picture inside the installed package: a built
wheel carries them (they used to be found by walking up from the source file to a checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from support import ROOT

from labelsieve.shipped import module_entry, sample_picture, shipped


def test_a_wheel_ships_every_module_shell_and_the_sample(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name in ("src", "modules", "configs"):
        shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(tree), "-w",
                    str(tmp_path / "wheel")], check=True, capture_output=True, timeout=300)
    wheel = zipfile.ZipFile(next((tmp_path / "wheel").glob("labelsieve-*.whl")))
    inside = {info.filename: info for info in wheel.infolist()}
    package = shipped().parent.parent  # site-packages (or src/) in this process
    wanted = [Path(module_entry(m.name)["executable_path"]) for m in (ROOT / "modules").iterdir() if (m / "main.py").is_file()]
    wanted += [p.with_name("main.py") for p in wanted] + [shipped("modules", "python.sh"), sample_picture()]
    for path in wanted:
        assert path.is_file(), path
        name = path.relative_to(package).as_posix()
        assert name in inside, name
        if name.endswith(".sh"):
            assert inside[name].external_attr >> 16 & 0o111, f"{name} is not executable in the wheel"
