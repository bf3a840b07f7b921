"""No process-wide state (issue 20): runtimes in one process keep their own folders and limits, and a runtime that must
not capture writes nothing. Everything here is a builtin (fake camera, data manager), so no module process starts."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import hyperframe.frame
import pytest
from grpclib import GRPCError, Status
from support import connect, eventually
from viam.components.arm import Arm
from viam.components.camera import Camera

from labelsieve.runtime import Runtime, RuntimeOptions


def machine_config(capture_dir: str | None = None) -> dict[str, Any]:
    capture = {"capture_methods": [{"method": "GetImages", "capture_frequency_hz": 20}]}
    manager = {"name": "data", "api": "rdk:service:data_manager", "model": "rdk:builtin:builtin",
               "attributes": {"sync_interval_mins": 60, **({"capture_dir": capture_dir} if capture_dir else {})}}
    return {"components": [{"name": "cam", "api": "rdk:component:camera", "model": "rdk:builtin:fake",
                            "attributes": {"width": 64}, "service_configs": [{"type": "data_manager", "attributes": capture}]},
                           {"name": "arm", "api": "rdk:component:arm", "model": "rdk:builtin:fake",
                            "attributes": {"model-path": "arm.json"}}],
            "services": [manager]}


def runtime(folder: Path, cfg: dict[str, Any], **options: Any) -> Runtime:
    """A runtime whose config lives in `folder/config` beside its own kinematics file `arm.json` (relative in the config)
    with `joints` joints, and whose data dir is `folder/data`."""
    config_dir = folder / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "arm.json").write_text(json.dumps({"joints": [{"type": "revolute"}] * options.pop("joints")}))
    (config_dir / "machine.json").write_text(json.dumps(cfg))
    return Runtime(RuntimeOptions(config_dir / "machine.json", port=0, data_dir=folder / "data", watch_config=False,
                                  **options))


def captures(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.capture"))


def test_two_runtimes_in_one_process_keep_their_own_folders_and_limits(tmp_path: Path) -> None:
    environ = dict(os.environ)
    a = runtime(tmp_path / "a", machine_config(), joints=6, max_request_bytes=100_000)
    b = runtime(tmp_path / "b", machine_config(capture_dir="captures"), joints=7)

    async def joints_and_big_extra(machine: Runtime) -> tuple[int, Status | None]:
        robot = await connect(machine.address)
        try:
            joints = len((await Arm.from_robot(robot, "arm").get_joint_positions()).values)
            try:
                await Camera.from_robot(robot, "cam").get_images(extra={"note": "x" * 200_000})
                return joints, None
            except GRPCError as exc:
                return joints, exc.status
        finally:
            await robot.close()

    async def run() -> None:
        await a.start()
        await b.start()
        try:
            assert os.environ == environ  # nothing written into the process's environment
            # each resolves its relative kinematics file against its own config folder, and has its own request limit
            assert await joints_and_big_extra(a) == (6, Status.RESOURCE_EXHAUSTED)
            assert await joints_and_big_extra(b) == (7, None)

            async def both_captured() -> None:
                assert captures(tmp_path / "a" / "data" / "capture") and captures(tmp_path / "b" / "config" / "captures")
            await eventually(both_captured)
        finally:
            await a.shutdown()
            await b.shutdown()

    asyncio.run(asyncio.wait_for(run(), 60))
    # a's default capture_dir is its data dir's; b's relative one is its config folder's; nothing went elsewhere
    assert set(captures(tmp_path)) == set(captures(tmp_path / "a" / "data" / "capture")) | set(
        captures(tmp_path / "b" / "config" / "captures"))


def test_a_runtime_that_must_not_capture_writes_no_capture_file(tmp_path: Path) -> None:
    capturing = runtime(tmp_path / "on", machine_config(), joints=6)
    quiet = runtime(tmp_path / "off", machine_config(), joints=6, capture=False)

    async def run() -> None:
        await quiet.start()
        await capturing.start()
        try:
            async def captured_three() -> None:  # the same collectors, running alongside: three frames' time passed
                assert len(captures(tmp_path / "on")) >= 3
            await eventually(captured_three)
        finally:
            await capturing.shutdown()
            await quiet.shutdown()

    asyncio.run(asyncio.wait_for(run(), 60))
    assert captures(tmp_path / "off") == []


@pytest.mark.parametrize("data", [b"", b"\x01", b"0123456789", b"0123456789a", bytes(range(256)) * 64])
def test_the_cheap_frame_repr_is_hyperframes_own_text(data: bytes) -> None:
    """routing.py replaces hyperframe's payload repr process-wide (h2 has no per-connection hook); it must print exactly
    what hyperframe's own would, so nothing else in the process can tell."""
    import labelsieve.runtime.routing  # noqa: F401  (installs it)

    r = data.hex()
    original = "None" if not data else "<hex:" + (r[:20] + "..." if len(r) > 20 else r) + ">"
    assert hyperframe.frame._raw_data_repr(data) == original
    assert f"<hex:{data[:10].hex()}" in repr(hyperframe.frame.DataFrame(1, data=data)) or not data
