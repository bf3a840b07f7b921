"""The auto-label filter through the runtime: camera -> filter -> proposer and verifier, each its own module process.

Stand-in stages (tests/modules/filter_stages) make every answer known, so the kept boxes are checked exactly; then the real
grounding detector (tiny random Grounding DINO) and VLM verifier (against a stand-in OpenAI endpoint) run the same chain.
One machine serves every check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError, Status
from PIL import Image, ImageDraw
from support import TEST_MODULES, FakeOpenAI, Machine, camera, connect, encode, eventually, module, validate
from viam.media.video import CameraMimeType, ViamImage
from viam.robot.client import RobotClient
from viam.services.vision import VisionClient

from labelsieve.capture.format import decode_provenance, from_annotations, read_capture
from labelsieve.runtime.builtins.data_manager import DataManagerService

GREY = (128, 128, 128)
RED, BLUE, GREEN, YELLOW = (220, 30, 30), (30, 30, 220), (30, 200, 30), (220, 220, 30)
# (box, colour, proposed class, score): the verifier answers by colour (red yes, blue no, green unsure, yellow "maybe")
SCENE = [((20, 20, 80, 100), RED, "person", 0.9), ((100, 20, 160, 100), BLUE, "person", 0.8),
         ((180, 20, 240, 100), GREEN, "person", 0.7), ((250, 20, 310, 100), YELLOW, "person", 0.6),
         ((20, 140, 80, 220), RED, "dog", 0.9), ((100, 140, 160, 220), RED, "car", 0.4),
         ((180, 140, 240, 220), RED, "car", 0.7), ((250, 140, 310, 220), BLUE, "car", 0.7)]
RULES = [{"detect": "person", "question": "Glasses?", "label": "glasses", "negative_label": "no_glasses"},
         {"detect": "car", "question": "Red car?", "label": "red_car", "min_confidence": 0.5, "padding": 0.05}]
# what the filter must keep from SCENE, exactly: (box, label, proposer score, answer)
EXPECTED = [((20, 20, 80, 100), "glasses", 0.9, "yes"), ((100, 20, 160, 100), "no_glasses", 0.8, "no"),
            ((180, 140, 240, 220), "red_car", 0.7, "yes")]


def picture(patches: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], background: tuple[int, int, int] = GREY
            ) -> Image.Image:
    image = Image.new("RGB", (320, 240), background)
    draw = ImageDraw.Draw(image)
    for box, colour in patches:
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
    return image


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Camera frames in play order, and the boxes the stand-in proposer returns for each."""
    root = tmp_path_factory.mktemp("filter")
    frames = root / "frames"
    frames.mkdir()
    picture([(box, colour) for box, colour, _, _ in SCENE]).save(frames / "000-scene.jpg", quality=95)
    picture([((150, 110, 170, 130), (0, 0, 0))]).save(frames / "001-empty.jpg", quality=95)
    picture([((150, 110, 170, 130), (0, 0, 0))]).save(frames / "002-still.jpg", quality=94)  # near-duplicate bytes
    picture([], background=(20, 20, 20)).save(frames / "003-fail.jpg", quality=95)
    picture([((20, 20, 80, 100), RED), ((100, 20, 160, 100), (220, 30, 220))]).save(root / "magenta.jpg", quality=95)
    boxes = {"000-scene.jpg": [[*box, score, name] for box, _, name, score in SCENE],
             "002-still.jpg": [[20, 20, 80, 100, 0.9, "person"]],  # would be kept, were the gate to let the frame through
             "magenta.jpg": [[20, 20, 80, 100, 0.9, "person"], [100, 20, 160, 100, 0.9, "person"]]}  # the verifier fails
    (root / "boxes.json").write_text(json.dumps(boxes))
    return {"frames": frames, "boxes": root / "boxes.json", "root": root}


def vision(name: str, model: str, /, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": model, "attributes": attributes}


def labeler(name: str, verifier: str, **attributes: Any) -> dict[str, Any]:
    return vision(name, "labelsieve:vision:autolabel-filter", detector="proposer", verifier=verifier, rules=RULES,
                  **attributes)


@pytest.fixture(scope="module")
def machine(scene: dict[str, Path], gdino_dir: Path) -> Iterator[tuple[Machine, FakeOpenAI]]:
    stages = TEST_MODULES / "filter_stages"
    with FakeOpenAI() as openai:
        config = {
            "modules": [module("media-camera"), module("filter-stages", stages), module("autolabel-filter"),
                        module("grounding-detector"), module("vlm-verifier")],
            "components": [camera("cam", source=str(scene["frames"])), camera("cam-dm", source=str(scene["frames"]))],
            "services": [
                vision("proposer", "test:vision:scripted-proposer", frames=str(scene["root"]), boxes=str(scene["boxes"]),
                       fail=["003-fail.jpg"]),
                vision("vlm", "test:vision:colour-verifier", batch="unimplemented", delay=0.1),
                vision("vlm-batch", "test:vision:colour-verifier", batch="verify"),
                vision("vlm-ignore", "test:vision:colour-verifier", batch="ignore"),
                labeler("labeler", "vlm", camera_name="cam", max_concurrency=3),
                labeler("labeler-batch", "vlm-batch"),
                labeler("labeler-ignore", "vlm-ignore"),
                vision("vlm-dm", "test:vision:colour-verifier"),
                {**labeler("labeler-dm", "vlm-dm", camera_name="cam-dm"), "service_configs": [
                    {"type": "data_manager", "attributes": {"capture_methods": [
                        {"method": "CaptureAllFromCamera", "capture_frequency_hz": 4,
                         "additional_params": {"camera_name": "cam-dm", "min_confidence_score": "0.7"}}]}}]},
                {"name": "data_manager", "api": "rdk:service:data_manager", "model": "rdk:builtin:builtin",
                 "attributes": {"capture_dir": str(scene["root"] / "capture"), "sync_interval_mins": 60}},
                vision("gdino", "labelsieve:vision:grounding-detector", model=str(gdino_dir), box_threshold=0.0,
                       text_threshold=0.0, max_detections=4),
                vision("vlm-real", "labelsieve:vision:vlm-verifier", base_url=openai.base_url, model="fake-vlm",
                       timeout=5.0),
                vision("labeler-real", "labelsieve:vision:autolabel-filter", detector="gdino", verifier="vlm-real",
                       rules=[{"detect": "person", "question": "Is it red?", "label": "red", "negative_label": "not_red",
                               "min_confidence": 0.0}]),
            ],
        }
        with Machine(config, scene["root"]) as running:
            yield running, openai


def run(machine: Machine, check: Any) -> Any:
    async def session() -> Any:
        robot = await connect(machine.address)
        try:
            return await check(robot)
        finally:
            await robot.close()
    return asyncio.run(session())


def jpeg(path: Path) -> ViamImage:
    return ViamImage(path.read_bytes(), CameraMimeType.JPEG)


def assert_expected(detections: list[Any]) -> None:
    assert [((d.x_min, d.y_min, d.x_max, d.y_max), d.class_name) for d in detections] == [(b, label) for b, label, _, _ in EXPECTED]
    assert [d.confidence for d in detections] == pytest.approx([score * 0.9 for _, _, score, _ in EXPECTED], abs=1e-6)


FROM_DM = {"fromDataManagement": True}


def test_the_chain_keeps_exactly_the_verified_boxes_and_filters_capture(machine: tuple[Machine, FakeOpenAI],
                                                                        scene: dict[str, Path]) -> None:
    async def check(robot: RobotClient) -> None:
        sieve = VisionClient.from_robot(robot, "labeler")

        async def capture(extra: dict[str, Any]) -> Any:
            return await sieve.capture_all_from_camera("cam", return_image=True, return_detections=True,
                                                       return_classifications=True, extra=extra)

        kept = await capture(FROM_DM)  # 000: the scene
        assert kept.image is not None and kept.image.data == (scene["frames"] / "000-scene.jpg").read_bytes()
        assert_expected(kept.detections)
        assert kept.classifications == []
        assert kept.extra["provenance"] == [
            {"rule": 0.0 if label != "red_car" else 1.0, "question": "Glasses?" if label != "red_car" else "Red car?",
             "proposer": "proposer", "proposer_class": "person" if label != "red_car" else "car",
             "proposer_score": pytest.approx(score), "verifier": "vlm", "answer": answer,
             "verifier_confidence": pytest.approx(0.9), "agreement": pytest.approx(score * 0.9),
             "crop": [pytest.approx(v) for v in crop]}
            for (_, label, score, answer), crop in zip(EXPECTED, ([14, 12, 86, 108], [94, 12, 166, 108], [177, 136, 243, 224]))]
        # the green and yellow persons were left unsure: ignore regions, stored beside the boxes, never as labels
        assert kept.extra["ignore"] == [
            {"box": [pytest.approx(v) for v in (x0 / 320, y0 / 240, x1 / 320, y1 / 240)], "label": "glasses", "rule": 0.0,
             "why": "unsure"} for (x0, y0, x1, y1), colour, _, _ in SCENE if colour in (GREEN, YELLOW)]
        for frame in ("001 nothing proposed", "002 a near-duplicate of 001", "003 the proposer fails"):
            with pytest.raises(GRPCError) as err:
                await capture(FROM_DM)
            assert err.value.status == Status.FAILED_PRECONDITION, frame
            assert err.value.message == "no capture from filter module", frame  # what viam-server matches on
        again = await capture({})  # 000 again: far from 003, the last frame looked at
        assert_expected(again.detections)
        empty = await capture({})  # 001 outside data capture: the image, and no boxes
        assert empty.image is not None and empty.detections == [] and empty.extra == {"provenance": [], "ignore": []}

        stats = await sieve.do_command({"stats": {}})
        assert stats["stats"] == {
            "frames_seen": 6, "duplicates_skipped": 1, "boxes_proposed": 16, "crops_over_limit": 0, "verified_yes": 4,
            "verified_no": 4, "verified_unsure": 4, "boxes_kept": 6, "frames_kept": 2, "unresolved": 2,
            "detector_errors": 1, "verifier_errors": 0}
        assert stats["last_decision"] == {"outcome": "nothing_verified", "boxes_kept": 0, "reasons": []}
        verifier = await VisionClient.from_robot(robot, "vlm").do_command({"calls": {}})
        assert verifier["classify_calls"] == 12  # 6 crops a scene (the dog has no rule, the 0.4 car is under 0.5)
        assert verifier["peak_in_flight"] == 3  # crops verified concurrently, at most max_concurrency at once
        assert sorted(verifier["questions"]) == sorted(["Glasses?"] * 8 + ["Red car?"] * 4)

    run(machine[0], check)


@pytest.mark.parametrize("verifier", ["batch", "ignore"])
def test_a_batch_verifier_is_asked_once_a_frame_and_others_crop_by_crop(machine: tuple[Machine, FakeOpenAI],
                                                                         scene: dict[str, Path], verifier: str) -> None:
    async def check(robot: RobotClient) -> None:
        sieve = VisionClient.from_robot(robot, f"labeler-{verifier}")
        for _ in range(2):  # an image sent on purpose is examined each time, however alike
            assert_expected(await sieve.get_detections(jpeg(scene["frames"] / "000-scene.jpg")))
        calls = await VisionClient.from_robot(robot, f"vlm-{verifier}").do_command({"calls": {}})
        assert (calls["batch_calls"], calls["classify_calls"]) == ((2, 0) if verifier == "batch" else (0, 12))
        assert await sieve.get_detections(jpeg(scene["root"] / "magenta.jpg")) == []  # one crop fails: nothing is labelled
        stats = await sieve.do_command({"stats": {}})
        assert stats["stats"]["verifier_errors"] == 1 and stats["stats"]["boxes_kept"] == 6
        assert stats["last_decision"]["outcome"] == "verifier_failed"
        assert "UNAVAILABLE: scripted failure on a magenta crop" in stats["last_decision"]["reasons"][0]
        proposer = await VisionClient.from_robot(robot, "proposer").do_command({"calls": {}})
        assert set(proposer["queries"]) == {"person. car."}  # the rules' classes, as the grounding detector reads them

    run(machine[0], check)


def test_data_capture_stores_only_verified_frames_with_provenance(machine: tuple[Machine, FakeOpenAI],
                                                                   scene: dict[str, Path]) -> None:
    folder = scene["root"] / "capture" / "rdk_service_vision" / "labeler-dm" / "CaptureAllFromCamera"

    async def check(robot: RobotClient) -> dict[str, Any]:
        async def captured() -> dict[str, Any]:
            stats = await DataManagerService.from_robot(robot, "data_manager").do_command({"stats": {}})
            counts = stats["methods"]["rdk:service:vision/labeler-dm/CaptureAllFromCamera"]
            assert counts["captured"] >= 2 and counts["filtered"] >= 3, stats  # the empty, still and failing frames
            return counts
        return await eventually(captured)

    counts = run(machine[0], check)
    files = sorted(folder.glob("*.capture"))
    assert len(files) >= 2 and counts["errors"] == 0, counts["last_error"]
    for path in files:
        reading = read_capture(path).readings[0]
        assert reading.binary == (scene["frames"] / "000-scene.jpg").read_bytes()
        bboxes = reading.metadata.annotations.bboxes
        assert [b.label for b in bboxes] == ["glasses", "no_glasses"]  # red_car's 0.63 is under min_confidence_score
        provenance = [decode_provenance(b.id) for b in bboxes]
        assert [(p["answer"], p["proposer_class"], p["verifier"]) for p in provenance] == [
            ("yes", "person", "vlm-dm"), ("no", "person", "vlm-dm")]
        assert [p["agreement"] for p in provenance] == pytest.approx([b.confidence for b in bboxes])
        ignore = from_annotations(reading.metadata.annotations, 320, 240).metadata["ignore"]
        assert ignore.class_name.tolist() == ["glasses", "glasses"]  # the unsure green and yellow persons
        assert ignore.xyxy[:, 0].tolist() == pytest.approx([180, 250], abs=0.01)


def test_real_modules_on_tiny_models(machine: tuple[Machine, FakeOpenAI]) -> None:
    running, openai = machine

    async def check(robot: RobotClient) -> None:
        sieve = VisionClient.from_robot(robot, "labeler-real")
        red = await sieve.get_detections(ViamImage(encode(picture([], RED)), CameraMimeType.JPEG))
        blue = await sieve.get_detections(ViamImage(encode(picture([], BLUE)), CameraMimeType.JPEG))
        stats = (await sieve.do_command({"stats": {}}))["stats"]
        assert red and {d.class_name for d in red} == {"red"}
        assert blue and {d.class_name for d in blue} == {"not_red"}
        assert stats["verified_yes"] == len(red) and stats["verified_no"] == len(blue) and stats["verifier_errors"] == 0
        assert all(0 <= d.confidence <= 0.95 + 1e-6 for d in red + blue)
        assert 0 < len(openai.requests) <= len(red) + len(blue)  # at most one VLM request a crop (identical ones are cached)

    run(running, check)


def test_bad_rules_are_refused_at_validation(scene: dict[str, Path], tmp_path: Path) -> None:
    config = {"modules": [module("media-camera"), module("autolabel-filter")],
              "components": [camera("cam", source=str(scene["frames"]))],
              "services": [vision("labeler", "labelsieve:vision:autolabel-filter", detector="det", verifier="vlm",
                                  camera_name="cam", rules=[{"detect": "person", "question": "Glasses?"}])]}
    result = validate(config, tmp_path)
    assert result.returncode == 2
    assert "resource 'labeler'" in result.stderr and "attributes.rules[0].label" in result.stderr
