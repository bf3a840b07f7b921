"""What a hostile tester found in the runtime, one test per finding (issue "Harden the runtime and the camera")."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from grpclib import GRPCError, Status
from support import ROOT, Machine, camera, connect, eventually, frames_folder, machine_status, module, validate
from viam.components.camera import Camera

from labelsieve.runtime import Runtime, RuntimeOptions
from labelsieve.runtime.modules import RestartPolicy


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labelsieve", *args], capture_output=True, text=True, timeout=timeout)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_module_warnings_and_errors_keep_their_level(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames))]}
    with Machine(config, tmp_path, args=("--log-level", "warning")) as machine:
        async def call() -> None:
            robot = await connect(machine.address)
            try:
                with pytest.raises(GRPCError) as err:
                    await Camera.from_robot(robot, "cam").get_images()
                assert err.value.status == Status.INVALID_ARGUMENT
            finally:
                await robot.close()
        asyncio.run(call())
        machine.wait_for_log("broken.jpg")  # the module's warning is shown at --log-level warning
    line = next(line for line in machine.lines if "broken.jpg" in line)
    assert "WARNING" in line and "labelsieve.module.media-camera" in line


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_field(tmp_path: Path, value: str) -> None:
    path = tmp_path / "machine.json"
    frames = frames_folder(tmp_path / "frames")
    path.write_text('{"modules": [], "components": [{"name": "cam", "api": "rdk:component:camera", '
                    f'"model": "labelsieve:camera:media", "attributes": {{"source": "{frames}", "fps": {value}}}}}]}}')
    result = run_cli("validate", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "'components[0].attributes.fps' is NaN or Infinity" in result.stderr


def test_deeply_nested_json_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "machine.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nested too deeply" in result.stderr


def test_messages_say_the_true_thing(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    config = {"modules": [module("media-camera", executable_path=str(ROOT / "modules/media_camera"))],
              "components": [camera("cam", source=str(frames))]}
    result = validate(config, tmp_path)
    assert result.returncode == 2 and "is a folder, not a program" in result.stderr
    config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames), fps="fast")]}
    result = validate(config, tmp_path)
    assert result.returncode == 2
    assert "resource 'cam': 'attributes.fps' must be a number" in result.stderr
    assert "'attributes' 'attributes" not in result.stderr


def test_validate_warns_about_what_viam_server_reads_differently(tmp_path: Path) -> None:
    frames_folder(tmp_path / "frames")
    (tmp_path / "camera.sh").symlink_to(ROOT / "modules/media_camera/run.sh")
    path = tmp_path / "machine.json"
    path.write_text(json.dumps({"modules": [{"type": "local", "name": "media-camera", "executable_path": "camera.sh"}],
                                "components": [camera("cam", source="frames")]}))
    result = run_cli("validate", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert f"'executable_path' 'camera.sh' is relative; viam-server needs an absolute path: use \"{tmp_path}/camera.sh\"" \
        in result.stdout
    assert "'attributes.source' 'frames' is a relative path" in result.stdout and f"{tmp_path}/frames" in result.stdout


def test_reload_summary_counts_modules_that_failed_to_start(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    broken = script(tmp_path / "broken.sh", "exit 3\n")
    config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames))]}
    with Machine(config, tmp_path) as machine:
        config["modules"] += [{"type": "local", "name": f"broken{i}", "executable_path": str(broken)} for i in (1, 2)]
        machine.write(config)
        machine.wait_for_log("applied config change")
    summary = next(line for line in machine.lines if "applied config change" in line)
    assert "0 module(s) (re)started, 2 failed to start" in summary


def test_a_module_the_runtime_gave_up_on_says_so_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After too many quick crashes, calls answer FAILED_PRECONDITION at once (not UNAVAILABLE after 10 s), the status
    says why, and the log has a line per failed restart with the module's repeated traceback once."""
    frames = frames_folder(tmp_path / "frames")
    marker = tmp_path / "started-once"
    flaky = script(tmp_path / "flaky.sh", f"""
if [ -e {marker} ]; then exec {sys.executable} -c 'raise RuntimeError("cannot open the camera")'; fi
touch {marker}
(sleep 2; kill $$) &
exec {ROOT / "modules/media_camera/run.sh"} "$@"
""")
    path = tmp_path / "machine.json"
    path.write_text(json.dumps({"modules": [{"type": "local", "name": "flaky", "executable_path": str(flaky)}],
                                "components": [camera("cam", source=str(frames))]}))
    caplog.set_level(logging.INFO)
    policy = RestartPolicy(max_backoff=0.05, max_restarts=3, stable_after=60)

    async def run() -> None:
        runtime = Runtime(RuntimeOptions(path, port=0, data_dir=tmp_path / "data", watch_config=False, restart=policy))
        await runtime.start()
        try:
            async def gave_up() -> None:
                assert "gave up" in (await machine_status(runtime.address))["cam"].error
            await eventually(gave_up, timeout=50)
            robot = await connect(runtime.address)
            try:
                with pytest.raises(GRPCError) as err:
                    await Camera.from_robot(robot, "cam").get_images(timeout=60)
                assert err.value.status == Status.FAILED_PRECONDITION
                assert "gave up" in str(err.value.message) and "crashed 3 times" in str(err.value.message)
                status = {s.name.name: s for s in (await robot.get_machine_status()).resources}
                assert status["cam"].state == status["cam"].STATE_UNHEALTHY and "gave up" in status["cam"].error
            finally:
                await robot.close()
        finally:
            await runtime.shutdown()

    asyncio.run(asyncio.wait_for(run(), 60))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("restarting module 'flaky' failed" in m for m in messages) == 3
    assert sum("Traceback" in m and "cannot open the camera" in m for m in messages) == 1


def test_oversized_requests_are_refused(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames))]}
    with Machine(config, tmp_path, args=("--max-request-bytes", "100000")) as machine:
        async def call() -> None:
            robot = await connect(machine.address)
            try:
                cam = Camera.from_robot(robot, "cam")
                assert len((await cam.get_images(extra={"note": "x" * 1000}))[0]) == 1
                with pytest.raises(GRPCError) as err:
                    await cam.get_images(extra={"note": "x" * 200_000})
                assert err.value.status == Status.RESOURCE_EXHAUSTED and "--max-request-bytes" in str(err.value.message)
                assert len((await cam.get_images())[0]) == 1  # the runtime is fine afterwards
            finally:
                await robot.close()
        asyncio.run(call())


def test_repeated_wrong_api_keys_are_logged_once(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    config = {"modules": [module("media-camera")], "components": [camera("cam", source=str(frames))]}
    with Machine(config, tmp_path, env={"LABELSIEVE_API_KEY": "right-key"}) as machine:
        for _ in range(2):  # the SDK tries a few times per dial
            with pytest.raises(GRPCError) as err:
                asyncio.run(connect(machine.address, api_key="wrong-key"))
            assert err.value.status == Status.UNAUTHENTICATED
    assert sum("rejected a wrong API key" in line for line in machine.lines) == 1


def test_nothing_a_module_spawned_outlives_a_killed_runtime(tmp_path: Path) -> None:
    frames = frames_folder(tmp_path / "frames")
    wrapper = script(tmp_path / "camera.sh", f"sleep 300 &\nexec {ROOT / 'modules/media_camera/run.sh'} \"$@\"\n")
    config = {"modules": [{"type": "local", "name": "media-camera", "executable_path": str(wrapper)}],
              "components": [camera("cam", source=str(frames))]}
    machine = Machine(config, tmp_path)
    tree = psutil.Process(machine.proc.pid).children(recursive=True)
    helper = next(p for p in tree if p.name() == "sleep")
    machine.stop(signal.SIGKILL)
    psutil.wait_procs([helper], timeout=15)
    assert not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE
