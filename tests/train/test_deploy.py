"""`labelsieve deploy`: to one machine's config, applied live by the runtime, and to a fleet through an `s3://` bucket
on a local S3-protocol server; the promotion gate refuses other classes and worse held-out scores unless forced."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import Machine, connect, eventually
from support.scenes import write_scenes
from support.fast import config, fast, frame_jpeg
from viam.media.video import ViamImage
from viam.services.vision import VisionClient

from labelsieve.dataset import build_dataset
from labelsieve.train.deploy import PromotionRefused, promotion_gate


def variant(model: Path, folder: Path, **changes: Any) -> Path:
    """A copy of the trained model directory with some of its model.json changed (another id, classes, metrics)."""
    shutil.copytree(model, folder)
    info = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**info, **changes}))
    return folder


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labelsieve", "deploy", *args], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ))


async def status(address: str, name: str = "det") -> dict[str, Any]:
    robot = await connect(address)
    try:
        detector = VisionClient.from_robot(robot, name)
        assert await detector.get_detections(ViamImage(frame_jpeg(), "image/jpeg"))
        return dict(await detector.do_command({"status": {}}))
    finally:
        await robot.close()


def test_promotion_gate_names_the_deciding_number(trained_model: Path, tmp_path: Path) -> None:
    info = json.loads((trained_model / "model.json").read_text())
    better = variant(trained_model, tmp_path / "better", metrics={**info["metrics"], "mAP50-95": 0.9})
    refused = r"mAP50-95 on the val split of dataset v1 .*: candidate 0\.\d+ < deployed 0\.9000"
    with pytest.raises(PromotionRefused, match=refused):
        promotion_gate(trained_model, better)
    assert "forced" in promotion_gate(trained_model, better, force=True)
    assert ">= deployed" in promotion_gate(better, trained_model)
    write_scenes(tmp_path / "capture", range(200, 212))  # another dataset: the deployed model is evaluated afresh on it
    other = build_dataset([str(tmp_path / "capture")], tmp_path / "dataset", progress=False).version
    retrained = variant(trained_model, tmp_path / "retrained", metrics={"mAP50-95": 1.0},
                        dataset={"id": other.id, "name": other.name, "path": str(other.path)})
    assert f"dataset v1 ({other.id[:12]}): candidate 1.0000 >= deployed 0." in promotion_gate(retrained, trained_model)
    renamed = variant(trained_model, tmp_path / "renamed", classes=["blue", "green"])
    with pytest.raises(PromotionRefused, match="classes differ"):
        promotion_gate(renamed, trained_model)


def test_the_teacher_gate_wants_fewer_disagreements_than_the_deployed_model(trained_model: Path, tmp_path: Path) -> None:
    """The same weights under another id disagree with the teacher's held-out labels exactly as often as the deployed
    model: the score gate lets it through, the teacher gate does not (it must disagree less), and --force still can."""
    from labelsieve.dataset import open_dataset
    from labelsieve.train.deploy import teacher_disagreement

    info = json.loads((trained_model / "model.json").read_text())
    same = variant(trained_model, tmp_path / "same", id="same-weights")
    rate = teacher_disagreement(trained_model, open_dataset(info["dataset"]["path"]))
    assert 0.0 <= rate <= 1.0 and rate == teacher_disagreement(same, open_dataset(info["dataset"]["path"]))
    assert ">= deployed" in promotion_gate(same, trained_model)
    with pytest.raises(PromotionRefused, match=f"disagreeing with the teacher.*candidate {rate:.3f} is not below deployed"):
        promotion_gate(same, trained_model, teacher=True)
    assert "forced" in promotion_gate(same, trained_model, force=True, teacher=True)


def test_deploy_to_a_machine_config_applies_live(trained_model: Path, tmp_path: Path) -> None:
    first = variant(trained_model, tmp_path / "first")
    second = variant(trained_model, tmp_path / "second")
    (second / "model.onnx").unlink()  # this one serves its .pt
    with Machine(config(fast("det", first)), tmp_path) as machine:
        assert asyncio.run(status(machine.address))["backend"] == "OnnxModel"
        run = deploy(str(second), "--config", str(machine.config_path), "--service", "det")
        assert run.returncode == 0, run.stderr
        assert json.loads(machine.config_path.read_text())["services"][0]["attributes"]["model_path"] == str(second)

        async def swapped() -> None:
            assert (await status(machine.address))["backend"] == "UltralyticsModel"
        asyncio.run(eventually(swapped, timeout=60))
        refused = deploy(str(variant(trained_model, tmp_path / "other", classes=["x", "y"])), "--config",
                         str(machine.config_path), "--service", "det")
        assert refused.returncode == 2 and "classes differ" in refused.stderr


def test_fleet_pointer_through_s3_with_offline_fallback(trained_model: Path, tmp_path: Path) -> None:
    from support.s3 import s3_server

    v2 = variant(trained_model, tmp_path / "v2", id="second-model")
    with s3_server() as env:
        fleet = f"s3://{env['BUCKET']}/fleet/glasses"
        assert deploy(str(trained_model), "--to", fleet).returncode == 0
        first_id = json.loads((trained_model / "model.json").read_text())["id"]
        machine = Machine(config(fast("det", fleet, poll_interval_s=0.3)), tmp_path, env=env)
        try:
            assert asyncio.run(status(machine.address))["version"] == first_id
            run = deploy(str(v2), "--to", fleet)
            assert run.returncode == 0, run.stderr

            async def moved() -> None:
                assert (await status(machine.address))["version"] == "second-model"
            asyncio.run(eventually(moved, timeout=30))
        except BaseException:
            machine.stop()
            raise
    try:  # the storage is gone: the robot keeps serving what it has, and so does a restarted one, from its cache
        assert asyncio.run(status(machine.address))["version"] == "second-model"
    finally:
        machine.stop()
    with Machine(config(fast("det", fleet, poll_interval_s=0.3)), tmp_path, env=env) as restarted:
        assert asyncio.run(status(restarted.address))["version"] == "second-model"
