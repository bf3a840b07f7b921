"""The grounding detector as a module process under the runtime, fed by the media camera, with tiny local models."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError, Status
from PIL import Image
from support import Machine, camera, connect, module, validate
from viam.media.video import ViamImage
from viam.services.vision import VisionClient

CLASSES = ["person", "dog"]


def detector(name: str, model: Path | str, **attrs: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": "labelsieve:vision:grounding-detector",
            "attributes": {"model": str(model), "classes": CLASSES, "box_threshold": 0.0, "text_threshold": 0.0,
                           "max_detections": 5, **attrs}}


def config(frames: Path, *services: dict[str, Any]) -> dict[str, Any]:
    return {"modules": [module("media-camera"), module("grounding-detector")],
            "components": [camera("cam", source=str(frames))], "services": list(services)}


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.effect_noise((640, 480), 60).convert("RGB").save(folder / "noise.jpg")
    return folder


def jpeg(size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("arch", ["gdino_dir", "owlv2_dir"])
def test_detector_module_through_the_runtime(arch: str, request: pytest.FixtureRequest, frames: Path,
                                              tmp_path: Path) -> None:
    model_dir = request.getfixturevalue(arch)
    services = (detector("det", model_dir, camera_name="cam"),
                detector("missing", "labelsieve-tests/no-such-model"))
    with Machine(config(frames, *services), tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                det = VisionClient.from_robot(robot, "det")
                from_camera = await det.get_detections_from_camera("cam")
                assert 0 < len(from_camera) <= 5 and {d.class_name for d in from_camera} <= set(CLASSES)
                assert all(0 <= d.x_min <= d.x_max <= 640 and 0 <= d.y_min <= d.y_max <= 480 for d in from_camera)
                on_image = await det.get_detections(ViamImage(jpeg(), "image/jpeg"), extra={"query": "cat. bus."})
                assert on_image and {d.class_name for d in on_image} <= {"cat", "bus"}
                captured = await det.capture_all_from_camera("cam", return_image=True, return_detections=True)
                assert captured.image is not None and captured.image.width == 640 and captured.detections
                props = await det.get_properties()
                assert props.detections_supported and not props.classifications_supported
                with pytest.raises(GRPCError) as err:  # readable size, unreadable pixels
                    await det.get_detections(ViamImage(jpeg()[:300], "image/jpeg"))
                assert err.value.status == Status.INVALID_ARGUMENT
                with pytest.raises(GRPCError) as err:
                    await det.get_classifications(ViamImage(jpeg(), "image/jpeg"), 1)
                assert err.value.status == Status.UNIMPLEMENTED
                with pytest.raises(GRPCError) as err:
                    await VisionClient.from_robot(robot, "missing").get_detections(ViamImage(jpeg(), "image/jpeg"))
                assert err.value.status == Status.FAILED_PRECONDITION
                assert "labelsieve-tests/no-such-model" in str(err.value.message) and "local directory" in str(err.value.message)
            finally:
                await robot.close()
        asyncio.run(run())


def test_bad_detector_attributes_are_rejected_at_validation(gdino_dir: Path, frames: Path, tmp_path: Path) -> None:
    result = validate(config(frames, detector("det", gdino_dir, box_threshold=1.5, camera_name="cam")), tmp_path)
    assert result.returncode == 2
    assert "resource 'det'" in result.stderr and "attributes.box_threshold" in result.stderr


def test_live_edits_reuse_or_swap_the_weights_without_a_failed_call(gdino_dir: Path, owlv2_dir: Path, frames: Path,
                                                                      tmp_path: Path) -> None:
    """Through the runtime: a threshold edit loads nothing again; a `model` edit loads the new model beside the old one
    and swaps, while a stream of calls goes on without a single failure."""
    cfg = config(frames, detector("det", gdino_dir, camera_name="cam"))
    with Machine(cfg, tmp_path) as machine:
        machine.wait_for_log("det: loaded", timeout=60)

        async def stream_during(edit: dict[str, Any], applied: str, count: int) -> int:
            robot = await connect(machine.address)
            det, calls = VisionClient.from_robot(robot, "det"), 0
            try:
                cfg["services"][0]["attributes"].update(edit)
                machine.write(cfg)
                while machine.log.count(applied) < count:
                    await det.get_detections_from_camera("cam")  # any failure fails the test
                    calls += 1
                await det.get_detections_from_camera("cam")
                return calls + 1
            finally:
                await robot.close()

        assert asyncio.run(stream_during({"box_threshold": 0.01}, "reconfigured det", 1)) > 0
        assert machine.log.count("det: loaded") == 1  # the edit reused the loaded weights
        assert asyncio.run(stream_during({"model": str(owlv2_dir)}, "det: loaded", 2)) > 0
    assert "(owlv2)" in machine.log.split("det: loaded")[-1].splitlines()[0]
