"""Modules written for viam-server by other people run unchanged: a module with its own API (custom protobuf service,
unary and streaming methods, called through the API's own client class) and a resource with an optional dependency."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from support import TEST_MODULES, Machine, camera, connect, eventually, frames_folder, machine_status, module
from viam.components.sensor import Sensor

sys.path.insert(0, str(TEST_MODULES / "gizmo"))
from api import Gizmo


def config(frames: Path, *extra: dict[str, Any]) -> dict[str, Any]:
    return {"modules": [module("gizmo", TEST_MODULES / "gizmo"), module("media-camera")],
            "components": [{"name": "g", "api": "acme:component:gizmo", "model": "acme:demo:mygizmo"},
                           {"name": "watcher", "api": "rdk:component:sensor", "model": "acme:demo:watcher",
                            "attributes": {"camera_name": "cam2"}}, *extra]}


def test_custom_api_and_optional_dependency(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    with Machine(config(frames), tmp_path) as machine:
        async def custom_api() -> None:
            robot = await connect(machine.address)
            try:
                gizmo = Gizmo.from_robot(robot, "g")
                assert await gizmo.do_one("work") == "g did work"
                assert [n async for n in gizmo.count(4)] == [0, 1, 2, 3]  # a server-streaming method
                assert await Sensor.from_robot(robot, "watcher").get_readings() == {"camera": ""}  # built without it
            finally:
                await robot.close()
        asyncio.run(custom_api())
        status = asyncio.run(machine_status(machine.address))
        assert status["watcher"].state == status["watcher"].STATE_READY

        machine.write(config(frames, camera("cam2", source=str(frames))))  # the optional dependency appears

        async def reconfigured() -> None:
            robot = await connect(machine.address)
            try:
                assert await Sensor.from_robot(robot, "watcher").get_readings() == {"camera": "cam2"}
            finally:
                await robot.close()
        asyncio.run(eventually(reconfigured))
    assert "serves its own API acme:component:gizmo" in machine.log
