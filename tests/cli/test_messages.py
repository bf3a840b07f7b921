"""Messages name what is wrong and the fix: what a resource is, "did you mean", one line per type mismatch, the attribute
that names a missing dependency, and every problem of a config in one round, placeholders included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import ROOT

from labelsieve.detect.config import GroundingDetectorConfig


def labelsieve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LABELSIEVE_UNSET_X"}
    return subprocess.run([sys.executable, "-m", "labelsieve", *args], capture_output=True, text=True, timeout=180, env=env)


def local_config(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    config = json.loads((ROOT / "configs/autolabel-local.json").read_text())
    for module in config["modules"]:
        module["executable_path"] = str((ROOT / "configs" / module["executable_path"]).resolve())
    config["components"][0]["attributes"]["source"] = str(ROOT / "configs/samples")
    return config


def test_eval_says_what_the_named_resource_is(tmp_path: Path) -> None:
    (tmp_path / "machine.json").write_text(json.dumps(local_config(tmp_path)))
    result = labelsieve("eval", str(tmp_path / "machine.json"), "--filter", "proposer", "--truth", "t.json", "--out",
                        str(tmp_path / "out"))
    assert result.returncode == 2
    assert ("--filter 'proposer' is a labelsieve:vision:grounding-detector, not an auto-label filter; filters here: "
            "labeler") in result.stderr, result.stderr


def test_a_union_type_mismatch_is_one_clear_sentence() -> None:
    try:
        GroundingDetectorConfig.parse("proposer", {"box_threshold": "high"})
    except Exception as exc:  # noqa: BLE001
        message = str(exc)
    assert message == ("proposer: 'attributes.box_threshold' must be a number or an object of numbers per class, "
                       "got 'high'")


def test_validate_reports_every_problem_with_its_fix(tmp_path: Path) -> None:
    config = local_config(tmp_path)
    services = {s["name"]: s for s in config["services"]}
    services["proposer"]["model"] = "labelsieve:vision:grounding-detecter"
    config["services"].append({**services["proposer"], "name": "proposer2", "model": "labelsieve:vision:grounding-detector",
                               "attributes": {"classes": ["person"], "box_threshold": "high"}})
    services["labeler"]["attributes"]["camera_name"] = "camera1"
    config["modules"][2]["env"] = {"KEY": "${environment.LABELSIEVE_UNSET_X}"}
    (tmp_path / "machine.json").write_text(json.dumps(config))
    result = labelsieve("validate", str(tmp_path / "machine.json"), "--data-dir", str(tmp_path / "home"))
    assert result.returncode == 2
    for text in ("resource 'proposer': 'model' no module serves labelsieve:vision:grounding-detecter",
                 "did you mean 'labelsieve:vision:grounding-detector'?",
                 "'attributes.box_threshold' must be a number or an object of numbers per class, got 'high'",
                 "resource 'labeler': 'attributes.camera_name' names 'camera1', which is not in the config",
                 "module 'vlm-verifier': 'env.KEY' uses ${environment.LABELSIEVE_UNSET_X}"):
        assert text in result.stderr, f"{text!r} missing from:\n{result.stderr}"
    assert "fake" not in result.stderr  # the builtin fakes are not offered as fixes for a typo
