"""Every verb: a user's mistake is one line on stderr naming the fix, exit 2, nothing left behind; a bug is one
traceback (viam's `sys.excepthook` used to print it twice more)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def labelsieve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labelsieve", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=dict(os.environ))


def test_an_impossible_device_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    (tmp_path / "dataset").mkdir()
    result = labelsieve("train", str(tmp_path / "dataset"), "--device", "0", "--out", str(tmp_path / "models"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--device cpu" in result.stderr, result.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("args", [["train", "d", "--epochs", "many"], ["deploy", "m"], ["run", "c.json", "--bogus"],
                                  ["dataset", "build"], ["frobnicate"]])
def test_a_bad_flag_is_one_line_naming_the_help(args: list[str]) -> None:
    result = labelsieve(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--help" in result.stderr, result.stderr


def test_a_config_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "machine.json").write_text("{not json")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    result = labelsieve("deploy", str(tmp_path / "model"), "--config", str(tmp_path / "machine.json"), "--service", "f")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "machine.json" in result.stderr, result.stderr


def test_a_bug_prints_one_traceback() -> None:
    code = ("import viam, labelsieve.cli as cli, labelsieve.cli.validate as v\n"
            "def broken(args): raise RuntimeError('a bug')\n"
            "v.handle = broken\n"
            "raise SystemExit(cli.main(['validate', 'x.json']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1 and "RuntimeError: a bug" in result.stderr, result.stderr
    assert "Uncaught exception" not in result.stderr
