"""When one part fails, the rest of the machine runs (issue 23): a module that exits at start, a resource its module
rejects and what depends on it are reported, the camera beside them serves, and an edit brings them up; unknown methods
answer UNIMPLEMENTED; a stream of calls sees no failure across a module's SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.empty_pb2 import Empty
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.const import Cardinality
from support import TEST_MODULES, Machine, camera, connect, eventually, frames_folder, machine_status, module
from viam.components.camera import Camera
from viam.services.vision import VisionClient

from labelsieve.runtime import Runtime, RuntimeOptions


def config(tmp_path: Path, frames: Path) -> dict[str, Any]:
    """A healthy camera; `bad`, whose source the camera module rejects; `after`, which depends on `bad`; and `probe`,
    whose module exits at start until `tmp_path/fixed` exists."""
    fixed = tmp_path / "fixed"
    flaky = tmp_path / "probe.sh"
    flaky.write_text(f"#!/bin/sh\n[ -e {fixed} ] || {{ echo 'probe: no driver yet' >&2; exit 3; }}\n"
                     f"exec {TEST_MODULES / 'frame_probe' / 'run.sh'} \"$@\"\n")
    flaky.chmod(0o755)
    return {"modules": [module("media-camera"), {"type": "local", "name": "probe-module", "executable_path": str(flaky)}],
            "components": [camera("cam", source=str(frames)), camera("bad", source=str(tmp_path / "later")),
                           {**camera("after", source=str(frames)), "depends_on": ["bad"]}],
            "services": [{"name": "probe", "api": "rdk:service:vision", "model": "test:vision:frame-probe",
                          "attributes": {"camera_name": "cam"}}]}


async def probe_size(address: str) -> str:
    robot = await connect(address)
    try:
        return (await VisionClient.from_robot(robot, "probe").get_classifications_from_camera("cam", 1))[0].class_name
    finally:
        await robot.close()


async def image_count(address: str, name: str) -> int:
    robot = await connect(address)
    try:
        return len((await Camera.from_robot(robot, name).get_images())[0])
    finally:
        await robot.close()


def test_what_fails_is_reported_the_rest_serves_and_an_edit_brings_it_up(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    cfg = config(tmp_path, frames)
    with Machine(cfg, tmp_path) as machine:
        assert asyncio.run(image_count(machine.address, "cam")) == 1
        status = asyncio.run(machine_status(machine.address))
        assert status["cam"].state == status["cam"].STATE_READY
        assert {n for n, s in status.items() if s.state == s.STATE_UNHEALTHY} == {"bad", "after", "probe"}
        assert "later does not exist" in status["bad"].error
        assert "needs 'bad', which is not running" in status["after"].error
        assert "module 'probe-module' did not start" in status["probe"].error and "code 3" in status["probe"].error
        errors = [line for line in machine.lines if " ERROR " in line]
        for name in ("'bad'", "'after'", "'probe'"):  # one line for each resource, and one for the module
            assert sum(f"not started: resource {name}" in line for line in errors) == 1, machine.log
        assert sum("labelsieve.runtime: module 'probe-module' exited with code 3" in line for line in errors) == 1

        frames_folder(tmp_path / "later")
        (tmp_path / "fixed").touch()
        cfg["components"][0]["attributes"]["max_side"] = 320  # any edit retries what did not start
        machine.write(cfg)
        assert asyncio.run(eventually(lambda: probe_size(machine.address))) == "320x240"

        async def all_ready() -> None:
            assert all(s.state == s.STATE_READY for s in (await machine_status(machine.address)).values())
        asyncio.run(eventually(all_ready))
        assert asyncio.run(image_count(machine.address, "after")) == 1
        assert machine.proc.poll() is None  # the same process throughout


def test_strict_run_and_validate_refuse_the_whole_config(tmp_path: Path) -> None:
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(config(tmp_path, frames_folder(tmp_path / "frames"))))
    for verb in (("run", "--strict", "--port", "0"), ("validate",)):
        result = subprocess.run([sys.executable, "-m", "labelsieve", verb[0], str(path), *verb[1:],
                                 "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "module 'probe-module' exited with code 3" in result.stderr and "later does not exist" in result.stderr
        assert "serving on" not in result.stdout


def runtime(tmp_path: Path, cfg: dict[str, Any]) -> Runtime:
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(cfg))
    return Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data", watch_config=False))


@pytest.mark.parametrize("path", ["/viam.component.camera.v1.CameraService/GetImage", "/no.such.Service/Method"])
def test_an_unknown_method_is_unimplemented_on_every_listener(tmp_path: Path, path: str) -> None:
    cfg = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames_folder(tmp_path / "f")))]}
    service, _, method = path[1:].rpartition("/")

    async def run() -> None:
        machine = runtime(tmp_path, cfg)
        await machine.start()
        host, port = machine.address.rsplit(":", 1)
        parent = str(machine.pool.modules["media-camera"].parent_socket)
        try:
            for channel in (Channel(host, int(port)), Channel(path=parent)):
                try:
                    with pytest.raises(GRPCError) as err:
                        async with channel.request(path, Cardinality.UNARY_UNARY, Empty, Empty) as stream:
                            await stream.send_message(Empty(), end=True)
                            await stream.recv_message()
                finally:
                    channel.close()
                assert err.value.status == Status.UNIMPLEMENTED
                assert err.value.message == f"unknown method {method} for service {service}"
        finally:
            await machine.shutdown()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_calls_across_a_module_sigkill_all_succeed(tmp_path: Path) -> None:
    """The README's promise: a call made while a module restarts waits for it; so does one that was in flight."""
    cfg = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames_folder(tmp_path / "f")))]}

    async def run() -> None:
        machine = runtime(tmp_path, cfg)
        await machine.start()
        robot = await connect(machine.address)
        cam, camera_module = Camera.from_robot(robot, "cam"), machine.pool.modules["media-camera"]
        first, done, calls = camera_module.process.pid, asyncio.Event(), [0, 0]

        async def stream(i: int) -> None:
            while not done.is_set():
                assert len((await cam.get_images())[0]) == 1
                calls[i] += 1

        streams = [asyncio.create_task(stream(i)) for i in range(2)]

        async def progressed(n: int) -> None:
            for task in streams:
                if task.done():
                    task.result()  # a failed call fails the test here, not as a timeout
            assert sum(calls) >= n

        try:
            await eventually(lambda: progressed(5))
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await eventually(lambda: _restarted(camera_module, first))
            after = sum(calls)
            await eventually(lambda: progressed(after + 5))
            done.set()
            await asyncio.gather(*streams)
        finally:
            await robot.close()
            await machine.shutdown()

    asyncio.run(asyncio.wait_for(run(), 90))


async def _restarted(module: Any, pid: int) -> None:
    assert module.process.pid != pid and module.link.up
