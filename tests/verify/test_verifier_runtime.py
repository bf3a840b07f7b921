"""The VLM verifier as a module process under the runtime, with a camera dependency and a real local HTTP endpoint."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib import GRPCError, Status
from PIL import Image
from support import FakeOpenAI, Machine, camera, connect, module
from viam.media.video import ViamImage
from viam.services.vision import VisionClient

KEY = "sk-runtime-secret-777"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verifier(name: str, base_url: str, **attrs: object) -> dict[str, object]:
    return {"name": name, "api": "rdk:service:vision", "model": "labelsieve:vision:vlm-verifier",
            "attributes": {"base_url": base_url, "model": "fake-vlm", "api_key_env": "VLM_KEY", "timeout": 5.0,
                           "max_retries": 1, "max_backoff": 0.05, **attrs}}


def jpeg(color: tuple[int, int, int]) -> ViamImage:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="JPEG")
    return ViamImage(buffer.getvalue(), "image/jpeg")


def test_verifier_module_through_the_runtime(server: FakeOpenAI, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (320, 240), (230, 20, 20)).save(frames / "red.jpg")
    config = {
        # the key reaches the module through the environment, never through the config file
        "modules": [module("media-camera"), module("vlm-verifier", env={"VLM_KEY": "${environment.LS_TEST_VLM_KEY}"})],
        "components": [camera("cam", source=str(frames))],
        "services": [verifier("vlm", server.base_url, camera_name="cam", default_question="Is it red?"),
                     verifier("offline", f"http://127.0.0.1:{closed_port()}/v1")],
    }
    with Machine(config, tmp_path, env={"LS_TEST_VLM_KEY": KEY}) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                vlm = VisionClient.from_robot(robot, "vlm")
                (from_camera,) = await vlm.get_classifications_from_camera("cam", 1)
                assert from_camera.class_name == "yes" and from_camera.confidence > 0.9
                (blue,) = await vlm.get_classifications(jpeg((10, 10, 230)), 1, extra={"question": "Is it red?"})
                assert blue.class_name == "no"
                with pytest.raises(GRPCError) as err:
                    await VisionClient.from_robot(robot, "offline").get_classifications(jpeg((230, 10, 10)), 1,
                                                                                         extra={"question": "Red?"})
                assert err.value.status == Status.UNAVAILABLE  # fail closed: an unreachable endpoint is never a "yes"
                truncated = ViamImage(jpeg((230, 10, 10)).data[:200], "image/jpeg")  # header (size) readable, pixels not
                with pytest.raises(GRPCError) as err:
                    await vlm.get_classifications(truncated, 1, extra={"question": "?"})
                assert err.value.status == Status.INVALID_ARGUMENT
            finally:
                await robot.close()
        asyncio.run(run())
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in server.requests)
    assert len(server.requests) == 2  # the camera frame and the blue crop; nothing else reached the endpoint
    assert KEY not in machine.log
