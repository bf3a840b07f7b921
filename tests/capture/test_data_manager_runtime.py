"""The data manager as a builtin of the runtime, configured as under viam-server: it reads the resources'
`service_configs`, captures through the same routing SDK clients use, answers Sync and DoCommand through the runtime, and
follows config edits."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from support import TEST_MODULES, Machine, camera, connect, eventually, frames_folder, module

from labelsieve.capture.format import read_capture
from labelsieve.runtime.builtins.data_manager import DataManagerService


def config(tmp_path: Path, frames: Path, hz: float) -> dict[str, Any]:
    labeler = {"name": "labeler", "api": "rdk:service:vision", "model": "test:vision:capture-stub",
               "attributes": {"camera_name": "cam", "script": ["keep", "filter"]},
               "service_configs": [{"type": "data_manager", "attributes": {"capture_methods": [
                   {"method": "CaptureAllFromCamera", "capture_frequency_hz": hz,
                    "additional_params": {"camera_name": "cam", "min_confidence_score": "0.5"}}]}}]}
    return {"modules": [module("media-camera"), module("capture-stub", TEST_MODULES / "capture_stub")],
            "components": [camera("cam", source=str(frames))],
            "services": [labeler, {"name": "data_manager", "api": "rdk:service:data_manager", "model": "builtin",
                                   "attributes": {"capture_dir": str(tmp_path / "capture"), "sync_interval_mins": 60,
                                                  "sync_url": str(tmp_path / "synced"), "tags": ["demo"]}}]}


def test_data_manager_captures_syncs_and_follows_edits(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames", size=(320, 240))
    cfg = config(tmp_path, frames, hz=10)
    with Machine(cfg, tmp_path) as machine:
        async def run() -> dict[str, Any]:
            robot = await connect(machine.address)
            try:
                manager = DataManagerService.from_robot(robot, "data_manager")

                async def captured() -> None:
                    stats = await manager.do_command({"stats": {}})
                    counts = stats["methods"]["rdk:service:vision/labeler/CaptureAllFromCamera"]
                    assert counts["captured"] >= 2 and counts["filtered"] >= 2, stats
                await eventually(captured)
                await manager.sync()
                status = {s.name.name: s for s in (await robot.get_machine_status()).resources}
                assert status["data_manager"].state == status["data_manager"].STATE_READY
                return await manager.do_command({"stats": {}})
            finally:
                await robot.close()
        asyncio.run(run())

        cfg["services"][0]["service_configs"][0]["attributes"]["capture_methods"][0]["capture_frequency_hz"] = 0
        machine.write(cfg)  # capture turned off: the data manager is reconfigured with the edit
        machine.wait_for_log("reconfigured data_manager")
    synced = sorted((tmp_path / "synced").rglob("*.capture"))
    assert synced and all(p.parent.relative_to(tmp_path / "synced") ==
                          Path("rdk_service_vision/labeler/CaptureAllFromCamera") for p in synced)
    for path in synced:
        reading = read_capture(path).readings[0]
        assert [b.label for b in reading.metadata.annotations.bboxes] == ["dog"]  # cat is under min_confidence_score
    assert "is disabled" in machine.log


def test_run_prints_a_status_line_and_a_closing_summary(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames", size=(64, 48))
    cfg = config(tmp_path, frames, hz=20)
    with Machine(cfg, tmp_path, args=("--status-interval", "0.2")) as machine:
        async def captured() -> None:
            robot = await connect(machine.address)
            try:
                manager = DataManagerService.from_robot(robot, "data_manager")

                async def some() -> None:
                    counts = (await manager.do_command({"stats": {}}))["methods"]
                    assert counts["rdk:service:vision/labeler/CaptureAllFromCamera"]["filtered"] >= 2
                await eventually(some)
            finally:
                await robot.close()
        asyncio.run(captured())
        machine.wait_for_log("labelsieve: captured ")  # the periodic line (no API reports what the CLI printed)
        assert machine.stop(signal.SIGINT) == 0
    status = [line for line in machine.lines if line.startswith("labelsieve: captured ")]
    assert len(status) == len(set(status)), "a line only when something changed"
    summary = machine.log[machine.log.index("labelsieve: stopped; captured "):].splitlines()
    assert summary[1].startswith("  data_manager: rdk:service:vision/labeler/CaptureAllFromCamera: ")
    assert "captured" in summary[1] and "dropped by the filter" in summary[1] and "errors" in summary[1]
    assert summary[2].startswith("  data_manager: ") and "files synced" in summary[2]
