"""The fast detector as a module process under the runtime: the trained model as ONNX and as .pt, the same boxes as
ultralytics in process, a hot swap under a continuous stream of calls, and a light process that never imports torch."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpclib import GRPCError, Status
from support import Machine, camera, connect, encode, eventually, module
from PIL import Image
from support.fast import LOW, config, fast, frame_jpeg
from support.scenes import scene_frames
from viam.media.video import ViamImage
from viam.services.vision import VisionClient

from labelsieve import images
from labelsieve.detect.fast import FastDetectorConfig, OnnxModel, UltralyticsModel
from labelsieve.errors import ConfigError

def test_numpy_onnx_path_matches_ultralytics(trained_model: Path) -> None:
    image = scene_frames(101, 1, 96)[0][0]  # not the training size: exercises the letterbox
    ours = OnnxModel(trained_model / "model.onnx").detect(image, LOW, 0.45, 20)
    theirs = UltralyticsModel(trained_model / "model.pt").detect(image, LOW, 0.45, 20)
    assert len(ours) and len(ours) == len(theirs)
    assert list(ours.class_name) == list(theirs.class_name) and ours.classes == theirs.classes == ("blue", "red")
    np.testing.assert_allclose(ours.confidence, theirs.confidence, atol=0.02)
    np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=2.0)


def raw_rgba(image: Image.Image) -> bytes:
    """viam's raw frame (`image/vnd.viam.rgba`): "RGBA", width and height as big-endian uint32, the pixels."""
    return b"RGBA" + image.width.to_bytes(4, "big") + image.height.to_bytes(4, "big") + image.convert("RGBA").tobytes()


def test_a_raw_frame_and_a_jpeg_of_the_same_pixels_give_the_same_boxes(trained_model: Path) -> None:
    model = OnnxModel(trained_model / "model.onnx")
    image = scene_frames(103, 1, 8 * model.input_size[0])[0][0]  # 8x the model's input: the JPEG decodes at 1/8 scale
    raw = model.detect(images.open_checked(raw_rgba(image)), LOW, 0.45, 20)
    jpeg = model.detect(images.open_checked(encode(image, quality=95)), LOW, 0.45, 20)
    assert len(raw) and list(raw.class_name) == list(jpeg.class_name)
    np.testing.assert_allclose(raw.xyxy, jpeg.xyxy, atol=image.width * 0.02)
    np.testing.assert_allclose(raw.confidence, jpeg.confidence, atol=0.05)
    assert all(0 <= x <= image.width for x in raw.xyxy.ravel())


def test_config_problems_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path.*does not exist"):
        FastDetectorConfig.parse("det", {"model_path": str(tmp_path / "missing.onnx")})
    with pytest.raises(ConfigError, match="confidence"):
        FastDetectorConfig.parse("det", {"model_path": "s3://b/fleet", "confidence": 2})


def test_onnx_and_pt_through_the_runtime_and_a_light_process(trained_model: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    scene_frames(102, 1, 96)[0][0].save(frames / "0.jpg", quality=95)
    services = (fast("onnx", trained_model, camera_name="cam"), fast("pt", trained_model / "model.pt"))
    machine_config = {**config(*services), "components": [camera("cam", source=str(frames))]}
    machine_config["modules"].append(module("media-camera"))
    with Machine(machine_config, tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                onnx, pt = VisionClient.from_robot(robot, "onnx"), VisionClient.from_robot(robot, "pt")
                image = ViamImage(frame_jpeg(), "image/jpeg")
                a, b = await onnx.get_detections(image), await pt.get_detections(image)
                assert a and [d.class_name for d in a] == [d.class_name for d in b]
                raw = await onnx.get_detections(ViamImage(raw_rgba(scene_frames(100, 1, 64)[0][0]), "image/vnd.viam.rgba"))
                assert [d.class_name for d in raw] == [d.class_name for d in a]
                assert all(abs(x.x_min - y.x_min) <= 2 and abs(x.confidence - y.confidence) < 0.05 for x, y in zip(raw, a))
                assert all(abs(x.x_min - y.x_min) <= 2 and abs(x.confidence - y.confidence) < 0.02 for x, y in zip(a, b))
                from_camera = await onnx.get_detections_from_camera("cam")
                captured = await onnx.capture_all_from_camera("cam", return_image=True, return_detections=True)
                assert from_camera and captured.image is not None and captured.detections == from_camera
                assert all(0 <= d.x_min <= d.x_max <= 96 for d in from_camera)
                status = await onnx.do_command({"status": {}})
                assert status["backend"] == "OnnxModel" and status["classes"] == ["blue", "red"]
                info = json.loads((trained_model / "model.json").read_text())
                assert status["model_id"] == info["id"] and status["dataset"] == {k: info["dataset"][k] for k in ("name", "id")}
                assert (await pt.do_command({"status": {}}))["backend"] == "UltralyticsModel"
                assert (await onnx.get_properties()).detections_supported
                with pytest.raises(GRPCError) as err:
                    await onnx.get_detections(ViamImage(frame_jpeg()[:200], "image/jpeg"))
                assert err.value.status == Status.INVALID_ARGUMENT
            finally:
                await robot.close()
        asyncio.run(run())
    (tmp_path / "light").mkdir()  # the .pt service above made that module process import torch: a fresh one, ONNX only
    with Machine(config(fast("onnx", trained_model / "model.onnx")), tmp_path / "light") as machine:
        async def imported() -> dict[str, bool]:
            robot = await connect(machine.address)
            try:
                return dict((await VisionClient.from_robot(robot, "onnx").do_command({"status": {}}))["imported"])
            finally:
                await robot.close()
        assert asyncio.run(imported()) == {"torch": False, "ultralytics": False, "transformers": False}


def test_hot_swap_under_a_stream_of_calls_fails_none(trained_model: Path, tmp_path: Path) -> None:
    import onnx

    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(trained_model / "model.onnx", live / "model.onnx")
    changed = onnx.load(str(trained_model / "model.onnx"))
    onnx.helper.set_model_props(changed, {**{p.key: p.value for p in changed.metadata_props}, "revision": "2"})
    with Machine(config(fast("det", live, poll_interval_s=0.2)), tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            det = VisionClient.from_robot(robot, "det")
            image = ViamImage(frame_jpeg(), "image/jpeg")
            failures: list[BaseException] = []
            calls = 0
            stop = asyncio.Event()
            enough = asyncio.Event()  # set once `wanted` more calls have been answered
            wanted = 0

            async def stream() -> None:
                nonlocal calls
                while not stop.is_set():
                    try:
                        assert await det.get_detections(image)
                    except (GRPCError, AssertionError) as exc:
                        failures.append(exc)
                    calls += 1
                    if calls >= wanted:
                        enough.set()

            async def more_calls(n: int) -> None:
                nonlocal wanted
                wanted = calls + n
                enough.clear()
                await asyncio.wait_for(enough.wait(), 60)

            async def status() -> dict[str, Any]:
                return dict(await det.do_command({"status": {}}))

            async def swapped() -> dict[str, Any]:
                now = await status()
                assert now["version"] != before, "the new model was never loaded"
                return now

            async def refused() -> dict[str, Any]:
                now = await status()
                assert now["problem"], "the broken file was never looked at"
                return now

            try:
                before = (await status())["version"]
                callers = [asyncio.create_task(stream()) for _ in range(3)]
                await more_calls(6)  # the stream is flowing before the swap
                staged = live / ".model.onnx.tmp"
                onnx.save(changed, str(staged))
                staged.replace(live / "model.onnx")  # atomic, as `cp` to a temp name + `mv` would do
                after = (await eventually(swapped, timeout=60))["version"]
                await more_calls(6)  # and goes on after it
                stop.set()
                await asyncio.gather(*callers)
                assert failures == [] and calls > 10
                staged.write_bytes(b"not an onnx model")  # a broken replacement: the served model stays
                staged.replace(live / "model.onnx")
                broken = await eventually(refused, timeout=60)
                assert "model.onnx" in broken["problem"] and broken["version"] == after and await det.get_detections(image)
            finally:
                await robot.close()
        asyncio.run(run())
