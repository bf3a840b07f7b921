"""The builtin seam: a resource class hosted in the runtime process is validated, added, listed, reconfigured and closed
with the config like a module's resource, and calls a real camera module through viam-sdk's own `Camera` client.

The runtime runs in this test's process through its Python API (`Runtime`), so the test can register its own builtin model;
the camera is a real module process and the client a real SDK RobotClient over TCP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from grpclib import GRPCError, Status
from support import TEST_MODULES, camera, connect, frames_folder, module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.resource.base import ResourceBase
from viam.services.vision import VisionClient

from labelsieve.errors import InvalidMachineConfig
from labelsieve.runtime import Runtime, RuntimeOptions
from labelsieve.runtime.builtins import register
from labelsieve.runtime.builtins.data_manager import DataManagerService

EVENTS: list[str] = []


def _frame_probe() -> type:
    spec = importlib.util.spec_from_file_location("frame_probe_main", TEST_MODULES / "frame_probe" / "main.py")
    assert spec and spec.loader
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe.FrameProbe


@register
class FrameSize(_frame_probe()):  # type: ignore[misc]
    """The test module's frame probe ("<width>x<height>" of its camera's frame, read through the SDK's Camera client),
    hosted as a builtin, recording when it is created and closed."""

    MODEL: ClassVar = "rdk:builtin:test-frame-size"

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Any:
        service = super().new(config, dependencies)
        EVENTS.append(f"new {config.name} with {type(service.camera).__name__}")
        return service

    async def close(self) -> None:
        EVENTS.append(f"close {self.name}")


def config(frames: Path, **cam: Any) -> dict[str, Any]:
    return {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames), **cam)],
            "services": [{"name": "sizer", "api": "rdk:service:vision", "model": "rdk:builtin:test-frame-size",
                          "attributes": {"camera_name": "cam"}}]}


async def size_and_names(address: str) -> tuple[str, set[str], dict[str, Any]]:
    robot = await connect(address)
    try:
        size = (await VisionClient.from_robot(robot, "sizer").get_classifications_from_camera("cam", 1))[0].class_name
        status = {s.name.name: s for s in (await robot.get_machine_status()).resources}
        return size, {n.name for n in robot.resource_names}, status
    finally:
        await robot.close()


def test_a_builtin_service_lives_with_the_config_and_calls_a_module(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(config(frames)))
    EVENTS.clear()

    async def run() -> None:
        runtime = Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data", watch_config=False))
        await runtime.start()
        try:
            size, names, status = await size_and_names(runtime.address)
            assert size == "640x480" and names == {"cam", "sizer"}
            assert status["sizer"].state == status["sizer"].STATE_READY
            assert EVENTS == ["new sizer with CameraClient"]  # its dependency is the SDK's own typed client

            path.write_text(json.dumps(config(frames, max_side=320)))  # the camera changes; its dependent follows
            await runtime.reload()
            size, _, _ = await size_and_names(runtime.address)
            assert size == "320x240"
            assert EVENTS[1:] == ["close sizer", "new sizer with CameraClient"]

            path.write_text(json.dumps({**config(frames), "services": []}))
            await runtime.reload()
            robot = await connect(runtime.address)
            try:
                assert {n.name for n in robot.resource_names} == {"cam"}
            finally:
                await robot.close()
            assert EVENTS[-1] == "close sizer"
        finally:
            await runtime.shutdown()

    asyncio.run(run())


def test_a_builtin_is_validated_before_anything_starts(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    bad = config(frames)
    bad["services"][0]["attributes"] = {}
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(InvalidMachineConfig) as err:
        asyncio.run(Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data")).validate())
    assert "resource 'sizer': 'attributes.camera_name' is required" in str(err.value)


@register
class Buggy(FrameSize):
    """A builtin whose validate_config has a bug (not a config problem)."""

    MODEL: ClassVar = "rdk:builtin:test-buggy"

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[list[str], list[str]]:
        return {}["camera_name"], []


def test_builtins_answer_through_the_modules_error_seam(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A config problem is INVALID_ARGUMENT whoever finds it (the data manager's missing sync_url too, not UNAVAILABLE);
    a bug is INTERNAL with its traceback logged, not passed off as the user's config."""
    cfg = {"services": [{"name": "data", "api": "rdk:service:data_manager", "model": "rdk:builtin:builtin"}]}
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(cfg))

    async def sync_status() -> tuple[Status, str]:
        runtime = Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data", watch_config=False))
        await runtime.start()
        try:
            robot = await connect(runtime.address)
            try:
                with pytest.raises(GRPCError) as err:
                    await DataManagerService.from_robot(robot, "data").sync()
                return err.value.status, str(err.value.message)
            finally:
                await robot.close()
        finally:
            await runtime.shutdown()

    status, message = asyncio.run(sync_status())
    assert status == Status.INVALID_ARGUMENT and "'attributes.sync_url' is not set" in message

    path.write_text(json.dumps({"services": [{"name": "bug", "api": "rdk:service:vision", "model": "rdk:builtin:test-buggy"}]}))
    with pytest.raises(InvalidMachineConfig) as err:
        asyncio.run(Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data")).validate())
    assert "Buggy.validate_config failed: KeyError: 'camera_name'" in str(err.value)
    assert any(r.exc_info and "failed unexpectedly" in r.getMessage() for r in caplog.records)
