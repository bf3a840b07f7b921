"""The embedded runtime end to end: real module processes, real sockets, the official viam-sdk RobotClient over TCP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from grpclib import GRPCError, Status
from PIL import Image
from support import ROOT, TEST_MODULES, Machine, camera, connect, eventually, machine_status, module, validate
from viam.components.camera import Camera
from viam.components.camera.client import CameraClient
from viam.components.motor import Motor
from viam.services.vision import VisionClient


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, color in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (640, 480), color).save(folder / f"{i:03d}.jpg", quality=90)
    return folder


def probe(name: str = "probe", camera_name: str = "cam") -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": "test:vision:frame-probe", "attributes": {"camera_name": camera_name}}


def base_config(frames: Path, **cam: Any) -> dict[str, Any]:
    return {
        "modules": [module("media-camera"), module("frame-probe", TEST_MODULES / "frame_probe")],
        "components": [camera("cam", source=str(frames), **cam)],
        "services": [probe()],
    }


async def images(address: str, name: str = "cam") -> list[Any]:
    robot = await connect(address)
    try:
        shots, _ = await Camera.from_robot(robot, name).get_images()
        return list(shots)
    finally:
        await robot.close()


async def probe_size(address: str) -> str:
    robot = await connect(address)
    try:
        vision = VisionClient.from_robot(robot, "probe")
        return (await vision.get_classifications_from_camera("cam", 1))[0].class_name
    finally:
        await robot.close()


def test_lists_resources_and_serves_images_in_order(frames: Path, tmp_path: Path) -> None:
    with Machine(base_config(frames), tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                names = {(n.subtype, n.name) for n in robot.resource_names}
                assert names == {("camera", "cam"), ("vision", "probe")}
                cam = Camera.from_robot(robot, "cam")
                seen = []
                for _ in range(4):
                    shots, _ = await cam.get_images()
                    assert shots[0].mime_type == "image/jpeg"
                    seen.append(Image.open(io.BytesIO(shots[0].data)).getpixel((5, 5)))
                # fps 0: each read is the next file, then it loops
                assert [max(range(3), key=lambda c: px[c]) for px in seen] == [0, 1, 2, 0]
                props = await cam.get_properties()
                assert list(props.mime_types) == ["image/jpeg"] and not props.supports_pcd
                with pytest.raises(GRPCError) as err:
                    await cam.get_point_cloud()
                assert err.value.status == Status.UNIMPLEMENTED
            finally:
                await robot.close()
        asyncio.run(run())
    assert "labelsieve.module.media-camera" in machine.log


def test_png_output_and_non_looping_source(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames, mime_type="image/png", loop=False)
    with Machine(config, tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                cam = Camera.from_robot(robot, "cam")
                for _ in range(3):
                    shots, _ = await cam.get_images()
                    assert shots[0].data.startswith(b"\x89PNG") and shots[0].mime_type == "image/png"
                with pytest.raises(GRPCError) as err:
                    await cam.get_images()
                assert err.value.status == Status.OUT_OF_RANGE and "no more frames" in str(err.value.message)
            finally:
                await robot.close()
        asyncio.run(run())


def test_dependency_between_two_module_processes(frames: Path, tmp_path: Path) -> None:
    with Machine(base_config(frames, max_side=320), tmp_path) as machine:
        assert asyncio.run(probe_size(machine.address)) == "320x240"
        # a module's own log lines arrive through robot Log, under the module's name (not via its stdout)
        machine.wait_for_log("labelsieve.module.frame-probe: rdk:service:vision/probe: main.py")
        line = next(line for line in machine.lines if "rdk:service:vision/probe: main.py" in line)
        assert "probe is watching camera cam" in line


def test_killed_module_comes_back_and_dependents_keep_working(frames: Path, tmp_path: Path) -> None:
    with Machine(base_config(frames), tmp_path) as machine:
        first = machine.module_pid("media_camera/main.py")
        os.kill(first, signal.SIGKILL)
        # the dependent module keeps its camera client: its calls go through the parent, which waits for the restart
        assert asyncio.run(probe_size(machine.address)) == "640x480"
        assert machine.module_pid("media_camera/main.py") != first
        assert len(asyncio.run(images(machine.address))) == 1


def test_config_edit_is_applied_live(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames)
    with Machine(config, tmp_path) as machine:
        probe_pid = machine.module_pid("frame_probe/main.py")
        config["components"][0]["attributes"]["mime_type"] = "image/png"
        config["components"].append(camera("cam2", source=str(frames), max_side=64))
        machine.write(config)

        async def edited() -> None:
            shots = await images(machine.address, "cam")
            assert shots[0].mime_type == "image/png"
            small = await images(machine.address, "cam2")
            assert Image.open(io.BytesIO(small[0].data)).size == (64, 48)
        asyncio.run(eventually(edited))
        assert machine.module_pid("frame_probe/main.py") == probe_pid  # untouched module kept running

        config["components"].pop()
        machine.write(config)

        async def removed() -> None:
            robot = await connect(machine.address)
            try:
                assert {n.name for n in robot.resource_names} == {"cam", "probe"}
            finally:
                await robot.close()
        asyncio.run(eventually(removed))

        config["components"][0]["attributes"]["source"] = str(tmp_path / "nowhere")
        config["components"].append(camera("cam3", source=str(frames), max_side=32))
        machine.write(config)
        small = asyncio.run(eventually(lambda: images(machine.address, "cam3")))  # the valid part of the edit is applied
        assert Image.open(io.BytesIO(small[0].data)).size == (32, 24)
        assert asyncio.run(images(machine.address))[0].mime_type == "image/png"  # the previous config keeps running
        assert "config change for cam not applied, keeping its previous config" in machine.log


def test_clean_shutdown_leaves_no_process_and_no_socket(frames: Path, tmp_path: Path) -> None:
    machine = Machine(base_config(frames), tmp_path)
    children = psutil.Process(machine.proc.pid).children(recursive=True)
    sockets = [Path(a) for c in children for a in c.cmdline() if a.endswith(".sock")]
    assert len(children) >= 2 and sockets and all(s.exists() for s in sockets)
    assert machine.stop(signal.SIGINT) == 0
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    assert not any(s.exists() for s in sockets) and not sockets[0].parent.exists()


def test_api_key_is_required_when_set(frames: Path, tmp_path: Path) -> None:
    env = {"LABELSIEVE_API_KEY": "s3cret-key", "LABELSIEVE_API_KEY_ID": "key-id-1"}
    with Machine(base_config(frames), tmp_path, env=env) as machine:
        async def shots(**creds: Any) -> int:
            robot = await connect(machine.address, **creds)
            try:
                images, _ = await Camera.from_robot(robot, "cam").get_images()
                return len(images)
            finally:
                await robot.close()

        assert asyncio.run(shots(api_key="s3cret-key", key_id="key-id-1")) == 1
        for wrong in ({"api_key": "wrong", "key_id": "key-id-1"}, {"api_key": "s3cret-key", "key_id": "other"}):
            with pytest.raises(GRPCError) as err:
                asyncio.run(shots(**wrong))
            assert err.value.status == Status.UNAUTHENTICATED
        with pytest.raises(ConnectionError):  # no key: ResourceNames is refused, so the SDK cannot connect
            asyncio.run(shots(tls=True))
    assert "s3cret-key" not in machine.log and "self-signed" in machine.log


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["components"][0].update(atributes={}), ["component 'cam'", "'atributes'", "did you mean 'attributes'"]),
        (lambda c: c["components"][0].update(model="labelsieve:camera:nope"),
         ["resource 'cam'", "'model'", "no module serves labelsieve:camera:nope", "labelsieve:camera:media"]),
        (lambda c: c["modules"][0].update(executable_path="/nonexistent/run.sh"),
         ["module 'media-camera'", "'executable_path'", "does not exist"]),
        (lambda c: c["components"].append(camera("cam", source="x")), ["resource 'cam'", "used twice"]),
        (lambda c: c["components"][0].update(depends_on=["probe"]), ["dependency cycle", "cam -> probe -> cam"]),
        (lambda c: c["components"][0]["attributes"].update(source="/no/such/folder"),
         ["resource 'cam'", "'attributes.source'", "/no/such/folder does not exist"]),
        (lambda c: c["components"][0]["attributes"].update(fps="fast"), ["'attributes.fps'", "must be a number"]),
        (lambda c: c["services"][0]["attributes"].update(camera_name="ghost"), ["resource 'probe'", "'ghost'", "not in the config"]),
        (lambda c: c.update(remotes=[]), ["'remotes'", "not supported", "viam-server"]),
        (lambda c: c["modules"][0].update(env={"X": "${environment.LABELSIEVE_UNSET_VAR}"}),
         ["LABELSIEVE_UNSET_VAR is not set"]),
    ],
    ids=["misspelt-key", "unknown-model", "missing-executable", "duplicate-name", "cycle", "module-validate", "attr-type",
         "implicit-dep", "unsupported-key", "placeholder"],
)
def test_bad_configs_are_rejected_with_a_clear_message(frames: Path, tmp_path: Path, mutate: Any, expected: list[str]) -> None:
    config = base_config(frames)
    mutate(config)
    result = validate(config, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from:\n{result.stderr}"


def test_valid_config_validates_and_placeholders_expand(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames)
    config["components"][0]["attributes"]["source"] = "${environment.LS_TEST_FRAMES}"
    os.environ["LS_TEST_FRAMES"] = str(frames)
    try:
        result = validate(config, tmp_path)
    finally:
        del os.environ["LS_TEST_FRAMES"]
    assert result.returncode == 0, result.stderr
    assert "valid (2 modules, 2 resources)" in result.stdout
    assert "Serving on" not in result.stdout + result.stderr  # modules' start-up chatter is DEBUG while validating


def test_a_clean_run_prints_no_warning_error_or_noise(frames: Path, tmp_path: Path) -> None:
    with Machine(base_config(frames), tmp_path) as machine:
        for _ in range(3):  # each client connects, calls and hangs up
            assert asyncio.run(probe_size(machine.address)) == "640x480"
            assert len(asyncio.run(images(machine.address))) == 1
        assert machine.stop(signal.SIGINT) == 0
    noise = [line for line in machine.lines if any(word in line for word in (" WARNING ", " ERROR ", "Request was cancelled"))]
    assert not noise, machine.log


def test_resource_that_fails_to_start_is_reported_not_hidden(frames: Path, tmp_path: Path) -> None:
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(b"not a video")
    config = base_config(frames)
    config["components"].append(camera("broken", source=str(junk)))
    with Machine(config, tmp_path) as machine:
        status = asyncio.run(machine_status(machine.address))
        assert status["cam"].state == status["cam"].STATE_READY
        assert status["broken"].state == status["broken"].STATE_UNHEALTHY
        assert "could not open video" in status["broken"].error

        async def run() -> None:
            robot = await connect(machine.address)
            try:
                with pytest.raises(GRPCError) as err:
                    await CameraClient("broken", robot._channel).get_images()
                assert err.value.status == Status.FAILED_PRECONDITION and "broken.mp4" in str(err.value.message)
            finally:
                await robot.close()
        asyncio.run(run())
    assert "AddResource(broken)" in machine.log


def test_a_module_that_fails_to_start_during_a_live_edit_does_not_stop_the_rest(frames: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/sh\necho 'broken module: missing dependency' >&2\nexit 3\n")
    broken.chmod(0o755)
    config = base_config(frames)
    with Machine(config, tmp_path) as machine:
        config["modules"].append({"type": "local", "name": "broken", "executable_path": str(broken)})
        config["components"].append(camera("cam2", source=str(frames), max_side=16))
        machine.write(config)
        small = asyncio.run(eventually(lambda: images(machine.address, "cam2")))
        assert Image.open(io.BytesIO(small[0].data)).size == (16, 12)
        assert "module 'broken' exited with code 3 before opening its socket" in machine.log
        assert "broken module: missing dependency" in machine.log  # its own words reach the log
        assert asyncio.run(probe_size(machine.address)) == "640x480"


def test_an_edit_that_would_orphan_a_dependent_changes_nothing(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames)
    with Machine(config, tmp_path) as machine:
        edited = {**config, "components": []}  # the probe still names cam in its attributes
        machine.write(edited)
        machine.wait_for_log("resource 'probe': 'attributes' needs 'cam', which this edit removes")
        assert "removed cam" not in machine.log
        assert asyncio.run(probe_size(machine.address)) == "640x480"
        machine.write({**edited, "services": []})  # removing both is fine

        async def gone() -> None:
            robot = await connect(machine.address)
            try:
                assert robot.resource_names == []
            finally:
                await robot.close()
        asyncio.run(eventually(gone))


@pytest.mark.parametrize("phase", ["validate", "new"])
def test_a_module_dying_mid_call_is_reported_not_fatal(frames: Path, tmp_path: Path, phase: str) -> None:
    config = base_config(frames)
    config["services"][0]["attributes"]["crash_in"] = phase
    if phase == "validate":
        result = validate(config, tmp_path)
        assert result.returncode == 2 and "resource 'probe'" in result.stderr
        assert "did not answer ValidateConfig(probe)" in result.stderr and "Traceback" not in result.stderr
        return
    with Machine(config, tmp_path) as machine:
        status = asyncio.run(machine_status(machine.address))
        assert status["probe"].state == status["probe"].STATE_UNHEALTHY
        assert "did not answer AddResource(probe)" in status["probe"].error
        assert len(asyncio.run(images(machine.address))) == 1


def test_a_taken_port_is_a_clear_error_with_nothing_left_behind(frames: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "machine.json"
        config.write_text(json.dumps(base_config(frames)))
        before = set(Path("/tmp").glob("ls-*"))
        result = subprocess.run([sys.executable, "-m", "labelsieve", "run", str(config), "--port", str(port),
                                 "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    assert set(Path("/tmp").glob("ls-*")) - before == set()  # its socket folder is gone
    assert "added cam" not in result.stderr  # it failed before loading anything


def test_modules_do_not_outlive_a_killed_runtime(frames: Path, tmp_path: Path) -> None:
    machine = Machine(base_config(frames), tmp_path)
    children = psutil.Process(machine.proc.pid).children(recursive=True)
    assert len(children) >= 2
    sockets = Path(next(a for c in children for a in c.cmdline() if a.endswith(".sock"))).parent
    machine.stop(signal.SIGKILL)  # no chance to clean up: the kernel tells the modules (PR_SET_PDEATHSIG)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert sockets.exists()
    assert validate(base_config(frames), tmp_path).returncode == 0
    assert not sockets.exists()  # the next runtime swept what the killed one left


def test_a_new_resource_that_fails_is_reported_then_retried_or_forgotten(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames)
    with Machine(config, tmp_path) as machine:
        late = tmp_path / "late"
        config["components"].append(camera("cam2", source=str(late)))  # fails ValidateConfig: no such folder yet
        machine.write(config)

        async def reported() -> None:
            status = await machine_status(machine.address)
            assert "cam2" in status and "does not exist" in status["cam2"].error
        asyncio.run(eventually(reported))
        late.mkdir()
        Image.new("RGB", (8, 8)).save(late / "x.png")
        config["components"][0]["attributes"]["max_side"] = 100  # any edit retries what failed
        machine.write(config)
        assert len(asyncio.run(eventually(lambda: images(machine.address, "cam2")))) == 1
        config["components"].pop()
        machine.write(config)

        async def forgotten() -> None:
            assert set(await machine_status(machine.address)) == {"cam", "probe"}
        asyncio.run(eventually(forgotten))


def test_a_crash_is_seen_even_when_a_helper_process_keeps_the_output_open(frames: Path, tmp_path: Path) -> None:
    wrapper = tmp_path / "camera_with_helper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 120 &\nexec {ROOT / 'modules/media_camera/run.sh'} \"$@\"\n")
    wrapper.chmod(0o755)
    config = base_config(frames)
    config["modules"][0] = {"type": "local", "name": "media-camera", "executable_path": str(wrapper)}
    with Machine(config, tmp_path) as machine:
        helper = next(p for p in psutil.Process(machine.proc.pid).children(recursive=True) if p.name() == "sleep")
        os.kill(machine.module_pid("media_camera/main.py"), signal.SIGKILL)
        assert len(asyncio.run(images(machine.address))) == 1  # waits for the restart, which first ends the old group
        assert not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE  # the dead module's group went too


async def _exists(path: Path) -> None:
    assert path.exists()


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_start_up_stops_promptly_and_cleanly(frames: Path, tmp_path: Path, presses: int) -> None:
    config = base_config(frames)
    validating = tmp_path / "validating"
    # the probe's module blocks in ValidateConfig, after creating `validating`
    config["services"][0]["attributes"].update(validate_seconds=30, validating_file=str(validating))
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "labelsieve", "run", str(path), "--port", "0",
                             "--data-dir", str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    asyncio.run(eventually(lambda: _exists(validating), timeout=60))
    children = psutil.Process(proc.pid).children(recursive=True)
    assert proc.stdout is not None
    proc.send_signal(signal.SIGINT)
    output = ""
    if presses == 2:  # the second once the first is acknowledged (the kernel merges a signal sent while one is pending)
        while "signal again to force" not in output:
            output += proc.stdout.readline() or pytest.fail(f"the runtime exited after one signal:\n{output}")
        proc.send_signal(signal.SIGINT)
    output += proc.communicate(timeout=15)[0]
    assert proc.returncode == 130
    # one press: a graceful stop (a module that ignores SIGTERM gets SIGKILL after 5 s); two: modules killed at once
    assert ("second signal: killing modules now" in output) == (presses == 2)
    assert not psutil.wait_procs(children, timeout=5)[1]


def test_stop_all_reaches_every_actuator(frames: Path, tmp_path: Path) -> None:
    config = base_config(frames)
    config["components"] += [{"name": f"wheel{i}", "api": "rdk:component:motor", "model": "test:motor:fake"} for i in (1, 2)]
    with Machine(config, tmp_path) as machine:
        async def run() -> list[float]:
            robot = await connect(machine.address)
            try:
                await robot.stop_all()
                await robot.stop_all()
                return [await Motor.from_robot(robot, f"wheel{i}").get_position() for i in (1, 2)]
            finally:
                await robot.close()
        assert asyncio.run(run()) == [2.0, 2.0]  # cameras and vision services have no Stop and are left alone
    assert "StopAll: stopped 2 resource(s)" in machine.log


def test_calls_are_served_throughout_a_reconfigure(frames: Path, tmp_path: Path) -> None:
    """viam-sdk replaces a resource on every reconfigure (close, then new, after fetching its dependencies from the
    parent); the runtime holds calls to it meanwhile, so streams of calls see no failure."""
    config = base_config(frames)
    with Machine(config, tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            probe, done = VisionClient.from_robot(robot, "probe"), asyncio.Event()

            async def stream() -> int:
                calls = 0
                while not done.is_set():
                    assert (await probe.get_classifications_from_camera("cam", 1))[0].class_name == "640x480"
                    calls += 1
                return calls

            try:
                streams = [asyncio.create_task(stream()) for _ in range(3)]
                for generation in range(1, 6):
                    config["services"][0]["attributes"]["generation"] = generation
                    machine.write(config)

                    async def reconfigured(generation: int = generation) -> None:
                        assert (await probe.do_command({}))["generation"] == generation
                    await eventually(reconfigured)
                done.set()
                assert all(calls > 0 for calls in await asyncio.gather(*streams))
            finally:
                await robot.close()
        asyncio.run(asyncio.wait_for(run(), 60))
