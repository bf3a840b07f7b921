"""`labelsieve dataset build` prints what this build found, also when it makes no new version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.scenes import write_scenes


def build(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "labelsieve", "dataset", "build", *args], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ))
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_source_of_only_duplicates_reports_them(tmp_path: Path) -> None:
    write_scenes(tmp_path / "first", range(4))
    first = build(str(tmp_path / "first"), str(tmp_path / "dataset"))
    assert "0 duplicate frames dropped" in first
    shutil.copytree(tmp_path / "first", tmp_path / "again")  # the same frames, synced twice
    again = build(str(tmp_path / "first"), str(tmp_path / "again"), str(tmp_path / "dataset"))
    frames = int(first.split("images ")[1].split()[0])
    assert "unchanged, no new version" in again and f"{frames} duplicate frames dropped" in again, again
