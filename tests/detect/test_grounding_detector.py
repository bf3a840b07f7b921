"""labelsieve.detect and the grounding-detector module, on tiny random-weight models loaded from local directories."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported: nothing here may reach the hub

import asyncio
import base64
import importlib.util
import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import support
from PIL import Image

from labelsieve import models
from labelsieve.detect import GroundingDetector, GroundingDetectorConfig, parse_query
from labelsieve.detect.grounding import LoadedModel
from labelsieve.detections import box_iou
from labelsieve.errors import ConfigError, InputError, WeightsNotFoundError
from labelsieve.models import ModelKey, ModelSlot

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["person", "dog", "traffic light"]


@pytest.fixture(scope="session", params=["grounding-dino", "owlv2"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("gdino_dir" if request.param == "grounding-dino" else "owlv2_dir")


def detector(model: Path | str, **attributes: Any) -> GroundingDetector:
    config = GroundingDetectorConfig.parse("det", {"model": str(model), "classes": CLASSES, **attributes})
    return GroundingDetector(config, "det")


def frame(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


# --- query and attributes -------------------------------------------------------------------------------------------

def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, labelsieve.detect; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_string_and_list_queries_give_the_same_classes() -> None:
    assert parse_query("person. dog.") == parse_query(["person", "dog"]) == ("person", "dog")
    assert parse_query(" traffic light . person.person. ") == ("traffic light", "person")
    with pytest.raises(ValueError, match="contains '.'"):
        parse_query(["person. dog"])
    with pytest.raises(ValueError, match="no class names"):
        parse_query(" . ")


@pytest.mark.parametrize(("attributes", "field", "message"), [
    ({"box_treshold": 0.3}, "attributes.box_treshold", "did you mean 'box_threshold'"),
    ({"box_threshold": 1.5}, "attributes.box_threshold", "between 0 and 1"),
    ({"text_threshold": {"persn": 0.2}}, "attributes.text_threshold.persn", "did you mean 'person'"),
    ({"box_threshold": "high"}, "attributes.box_threshold", "must be a number"),
    ({"device": "gpu"}, "attributes.device", "'auto', 'cpu', 'cuda'"),
    ({"dtype": "float64"}, "attributes.dtype", "'float32'"),
    ({"default_query": "person."}, "attributes.default_query", "together with 'classes'"),
    ({"quantize": "int8", "device": "cuda"}, "attributes.quantize", "CPU only"),
    ({"max_detections": 0}, "attributes.max_detections", "at least 1"),
    ({"imgsz": 640.5}, "attributes.imgsz", "whole number"),
    ({"nms_iou": 0}, "attributes.nms_iou", "(0, 1]"),
])
def test_bad_attributes_are_rejected_naming_the_field(attributes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GroundingDetectorConfig.parse("det", {"classes": CLASSES, **attributes})
    assert caught.value.field == field and caught.value.resource == "det"
    assert message in str(caught.value)


def test_attributes_arrive_as_viam_sends_them() -> None:
    config = GroundingDetectorConfig.parse("det", {"default_query": "person. dog.", "imgsz": 640.0,
                                                   "box_threshold": {"dog": 0.5}})
    assert config.configured_classes == ("person", "dog")
    assert config.imgsz == 640
    assert config.threshold("box_threshold", "dog", 0.35) == 0.5
    assert config.threshold("box_threshold", "person", 0.35) == 0.35


# --- post-processing, with a backend whose outputs are chosen by hand ---------------------------------------------

class ScriptedBackend:
    """Returns fixed boxes and per-class scores, so thresholds, NMS, clipping and the cut can be checked exactly."""

    default_thresholds = (0.3, 0.2)
    default_input_size = 480
    device = "cpu"

    def __init__(self, boxes: list[list[float]], scores: list[list[float]]) -> None:
        self.boxes, self.scores, self.encoded = np.array(boxes, np.float32), np.array(scores, np.float32), []

    def encode_text(self, classes: tuple[str, ...]) -> tuple[str, ...]:
        self.encoded.append(classes)
        return classes

    def infer(self, images: list[Image.Image], text: Any, input_size: int) -> list[Any]:
        return [(self.boxes, self.scores[:, : len(text)], self.scores[:, : len(text)]) for _ in images]


def scripted(backend: ScriptedBackend, **attributes: Any) -> GroundingDetector:
    """A detector whose slot already holds `backend`: the weights are not what these tests are about."""
    slot: ModelSlot[LoadedModel] = ModelSlot("det")
    slot.load(ModelKey(f"scripted-{id(backend)}"), lambda: LoadedModel(backend)).result()
    return GroundingDetector(GroundingDetectorConfig.parse("det", {"classes": ["person", "dog"], **attributes}), "det", slot)


BOXES = [[10, 10, 50, 50], [12, 12, 52, 52], [100, 100, 200, 200], [600, 400, 700, 520], [0, 0, 5, 5]]
SCORES = [[0.9, 0.1], [0.8, 0.1], [0.1, 0.6], [0.1, 0.4], [0.25, 0.05]]


def test_per_class_thresholds_nms_clipping_and_order() -> None:
    (dets,) = scripted(ScriptedBackend(BOXES, SCORES), box_threshold={"dog": 0.5}).detect_sync([frame()])
    # box 1 is suppressed by box 0 (same class, IoU 0.82); box 3 is a dog under the dog threshold; box 4 is under 0.3.
    assert dets.class_name.tolist() == ["person", "dog"]
    assert dets.confidence.tolist() == pytest.approx([0.9, 0.6])
    (loose,) = scripted(ScriptedBackend(BOXES, SCORES), box_threshold=0.0, text_threshold=0.0, nms_iou=1.0).detect_sync(
        [frame()])
    assert len(loose) == 5
    assert loose.xyxy[:, [0, 2]].max() <= 640 and loose.xyxy[:, [1, 3]].max() <= 480  # box 3 clipped to the frame
    assert np.all(np.diff(loose.confidence) <= 0)


def test_nms_is_per_class() -> None:
    scores = [[0.9, 0.1], [0.1, 0.8]]  # the same place, two classes: both stay
    (dets,) = scripted(ScriptedBackend(BOXES[:2], scores)).detect_sync([frame()])
    assert sorted(dets.class_name.tolist()) == ["dog", "person"]


def test_max_detections_keeps_the_most_confident() -> None:
    (dets,) = scripted(ScriptedBackend(BOXES, SCORES), box_threshold=0.0, text_threshold=0.0, nms_iou=1.0,
                       max_detections=2).detect_sync([frame()])
    assert dets.confidence.tolist() == pytest.approx([0.9, 0.8])


def test_text_is_encoded_once_per_distinct_query() -> None:
    backend = ScriptedBackend(BOXES, SCORES)
    det = scripted(backend)
    det.detect_sync([frame()]), det.detect_sync([frame()], "person. dog."), det.detect_sync([frame()], ["dog"]), det.detect_sync([frame()])
    assert backend.encoded == [("person", "dog"), ("dog",)]


def test_a_call_without_a_query_needs_configured_classes() -> None:
    det = scripted(ScriptedBackend(BOXES, SCORES), classes=[])
    with pytest.raises(InputError, match="no query given"):
        det.detect_sync([frame()])
    with pytest.raises(InputError, match="bad query"):
        det.detect_sync([frame()], ["person.dog"])


# --- real (tiny) models, loaded from a local directory like a user's snapshot -------------------------------------

def test_class_names_are_exactly_the_requested_classes(model_dir: Path) -> None:
    det = detector(model_dir, box_threshold=0.0, text_threshold=0.0, nms_iou=1.0)
    images = [frame(), frame(320, 500, seed=1)]
    results = det.detect_sync(images)
    assert all(len(dets) > 0 for dets in results)
    for dets, image in zip(results, images):
        assert set(dets.class_name.tolist()) <= set(CLASSES)
        assert dets.xyxy.min() >= 0
        assert dets.xyxy[:, [0, 2]].max() <= image.width and dets.xyxy[:, [1, 3]].max() <= image.height


def test_query_override_and_batching(model_dir: Path) -> None:
    images = [frame(seed=s) for s in range(3)]
    one = detector(model_dir, box_threshold=0.0, text_threshold=0.0, batch_size=1, imgsz=64)
    three = detector(model_dir, box_threshold=0.0, text_threshold=0.0, batch_size=3, imgsz=64)
    by_string, by_list = one.detect_sync(images, "Dog. cat."), three.detect_sync(images, ["Dog", "cat"])
    for a, b in zip(by_string, by_list):
        assert set(a.class_name.tolist()) <= {"Dog", "cat"} and len(a) > 0
        assert a.class_name.tolist() == b.class_name.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)


def test_per_class_threshold_on_a_real_model(gdino_dir: Path) -> None:
    open_ = detector(gdino_dir, box_threshold=0.0, text_threshold=0.0).detect_sync([frame()])[0]
    assert "person" in open_.class_name.tolist()
    strict = detector(gdino_dir, box_threshold={"person": 1.0, "dog": 0.0, "traffic light": 0.0},
                      text_threshold=0.0).detect_sync([frame()])[0]
    assert "person" not in strict.class_name.tolist() and len(strict) > 0


def test_nms_and_max_detections_on_a_real_model(gdino_dir: Path) -> None:
    dets = detector(gdino_dir, box_threshold=0.0, text_threshold=0.0, nms_iou=0.1, max_detections=3).detect_sync(
        [frame()])[0]
    assert 0 < len(dets) <= 3
    for name in set(dets.class_name.tolist()):
        same = dets.xyxy[dets.class_name == name]
        iou = box_iou(same, same)
        assert (iou[~np.eye(len(same), dtype=bool)] <= 0.1).all()


def test_missing_weights_name_the_model_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIAM_MODULE_DATA", str(tmp_path))
    det = detector("labelsieve-tests/no-such-detector")
    with pytest.raises(WeightsNotFoundError) as caught:
        det.detect_sync([frame()])
    message = str(caught.value)
    assert "labelsieve-tests/no-such-detector" in message and str(tmp_path / "hf") in message
    assert "hf download labelsieve-tests/no-such-detector" in message and "local directory" in message


# --- the Viam module, in process ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("grounding_detector_main", ROOT / "modules/grounding_detector/main.py")
    assert spec and spec.loader
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    yield main


def component(attributes: dict[str, Any], name: str = "proposer") -> Any:
    from viam.proto.app.robot import ComponentConfig
    from viam.utils import dict_to_struct

    return ComponentConfig(name=name, api="rdk:service:vision", model="labelsieve:vision:grounding-detector",
                           attributes=dict_to_struct(attributes))


def test_module_serves_detections(module: ModuleType, gdino_dir: Path) -> None:
    from grpclib import GRPCError, Status
    from viam.components.camera import Camera
    from viam.media.video import CameraMimeType, NamedImage, ViamImage
    from viam.proto.common import ResponseMetadata

    class StillCamera(Camera):
        async def get_images(self, **kwargs: Any) -> Any:
            return [NamedImage("still", jpeg(frame()), CameraMimeType.JPEG)], ResponseMetadata()

        async def get_point_cloud(self, **kwargs: Any) -> Any:
            raise NotImplementedError

        async def get_properties(self, **kwargs: Any) -> Any:
            raise NotImplementedError

    attributes = {"model": str(gdino_dir), "classes": CLASSES, "box_threshold": 0.0, "text_threshold": 0.0,
                  "camera_name": "cam", "max_detections": 5.0}
    service_cls = module.GroundingDetectorService
    assert service_cls.validate_config(component(attributes)) == (["cam"], [])
    service = service_cls.new(component(attributes), {Camera.get_resource_name("cam"): StillCamera("cam")})

    async def calls() -> None:
        image = ViamImage(jpeg(frame()), CameraMimeType.JPEG)
        detections = await service.get_detections(image)
        assert 0 < len(detections) <= 5 and {d.class_name for d in detections} <= set(CLASSES)
        assert all(0 <= d.x_min < d.x_max <= 640 and 0 <= d.y_min < d.y_max <= 480 for d in detections)
        overridden = await service.get_detections(image, extra={"query": "cat."})
        assert {d.class_name for d in overridden} == {"cat"}
        from_camera = await service.get_detections_from_camera("cam")
        assert [d.class_name for d in from_camera] == [d.class_name for d in detections]
        captured = await service.capture_all_from_camera("cam", return_image=True, return_detections=True)
        assert captured.image is not None and len(captured.detections) == len(detections)
        assert not captured.classifications and not captured.objects
        properties = await service.get_properties()
        assert properties.detections_supported and not properties.classifications_supported

        batch = {"images": [base64.b64encode(jpeg(frame(seed=s))).decode() for s in range(2)], "query": "dog. cat."}
        answer = await service.do_command({"detect": batch})
        assert len(answer["detect"]) == 2
        assert all(box["class_name"] in {"dog", "cat"} for boxes in answer["detect"] for box in boxes)

        for call, status in [
            (service.get_detections(ViamImage(b"\xff\xd8 not a jpeg", CameraMimeType.JPEG)), Status.INVALID_ARGUMENT),
            (service.get_detections(image, extra={"query": 3}), Status.INVALID_ARGUMENT),
            (service.get_detections_from_camera("other-cam"), Status.INVALID_ARGUMENT),
            (service.do_command({"detect": {"images": ["%%%"]}}), Status.INVALID_ARGUMENT),
            (service.get_classifications(image, 1), Status.UNIMPLEMENTED),
            (service.get_object_point_clouds("cam"), Status.UNIMPLEMENTED),
            (service.do_command({"train": {}}), Status.UNIMPLEMENTED),
        ]:
            with pytest.raises(GRPCError) as caught:
                await call
            assert caught.value.status == status, caught.value.message
        with pytest.raises(GRPCError, match="get_detections, get_detections_from_camera"):
            await service.get_detections_3d("cam")
        with pytest.raises(GRPCError) as caught:  # a decompression bomb is refused from its header
            await service.get_detections(ViamImage(support.bomb_png(), CameraMimeType.PNG))
        assert caught.value.status == Status.INVALID_ARGUMENT
        assert "proposer: the image: 196,000,000 pixels is over the limit" in caught.value.message
        assert "over the limit of" in caught.value.message

    asyncio.run(calls())


def test_module_reports_a_failed_load_on_every_call(module: ModuleType, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from grpclib import GRPCError, Status
    from viam.media.video import CameraMimeType, ViamImage

    monkeypatch.setenv("VIAM_MODULE_DATA", str(tmp_path))
    service = module.GroundingDetectorService.new(component({"model": "labelsieve-tests/absent", "classes": ["dog"]},
                                                            "absent"), {})

    async def calls() -> None:
        for _ in range(2):
            with pytest.raises(GRPCError) as caught:
                await service.get_detections(ViamImage(jpeg(frame()), CameraMimeType.JPEG))
            assert caught.value.status == Status.FAILED_PRECONDITION
            assert "labelsieve-tests/absent" in caught.value.message and "hf download" in caught.value.message

    asyncio.run(calls())


def _loose(model: Path) -> dict[str, Any]:
    return {"model": str(model), "classes": CLASSES, "box_threshold": 0.0, "text_threshold": 0.0, "imgsz": 64}


def test_a_threshold_edit_loads_no_weights(module: ModuleType, gdino_dir: Path) -> None:
    """viam-sdk reconfigures by closing the object and calling new() with the edited config: the slot hands over the
    loaded model, so the new object answers at once, with the new threshold, and nothing is loaded again."""
    from viam.media.video import CameraMimeType, ViamImage

    cls, image = module.GroundingDetectorService, ViamImage(jpeg(frame()), CameraMimeType.JPEG)

    async def scenario() -> None:
        first = cls.new(component(_loose(gdino_dir), "edited"), {})
        loose = await first.get_detections(image)
        loads = models.loads[first.detector.key]
        await first.close()
        second = cls.new(component({**_loose(gdino_dir), "box_threshold": 1.0}, "edited"), {})
        assert second.detector.slot.key == first.detector.key  # served from the slot at once, not loading
        assert len(await second.get_detections(image)) == 0 < len(loose)  # the edit applies: nothing scores over 1.0
        assert models.loads[second.detector.key] == loads == 1
        await second.close()

    asyncio.run(scenario())


def test_a_model_edit_swaps_under_a_stream_of_calls_without_a_failure(module: ModuleType, gdino_dir: Path,
                                                                      owlv2_dir: Path) -> None:
    from grpclib import GRPCError
    from viam.media.video import CameraMimeType, ViamImage

    cls, image = module.GroundingDetectorService, ViamImage(jpeg(frame()), CameraMimeType.JPEG)

    async def scenario() -> None:
        current = cls.new(component(_loose(gdino_dir), "swapped"), {})
        await current.detector.slot.get()
        answered, failed, stop = [], [], asyncio.Event()

        async def client() -> None:  # always calls the object the module serves now, as the runtime would
            while not stop.is_set():
                try:
                    answered.append(await current.get_detections(image))
                except GRPCError as exc:
                    failed.append(exc)

        clients = [asyncio.create_task(client()) for _ in range(2)]
        await support.eventually(lambda: _at_least(answered, 2), timeout=60)
        await current.close()
        current = cls.new(component(_loose(owlv2_dir), "swapped"), {})
        owl = current.detector.key
        await support.eventually(lambda: _equal(current.detector.slot.key, owl), timeout=120)
        served = len(answered)
        await support.eventually(lambda: _at_least(answered, served + 2), timeout=60)
        stop.set()
        await asyncio.gather(*clients)
        assert not failed and models.loads[owl] == 1
        await current.close()

    asyncio.run(scenario())


async def _at_least(items: list[Any], count: int) -> None:
    assert len(items) >= count


async def _equal(a: Any, b: Any) -> None:
    assert a == b


def test_run_sh_execs_main_with_the_project_interpreter(tmp_path: Path) -> None:
    """viam-server runs `run.sh <socket> --log-level=debug`: it must exec main.py with $LABELSIEVE_PYTHON, passing argv on."""
    record = tmp_path / "argv"
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$$" "$@" > {record}\n')
    stub.chmod(0o755)
    run_sh = ROOT / "modules/grounding_detector/run.sh"
    result = subprocess.run(["bash", "-c", f'echo $$; exec "{run_sh}" /tmp/x.sock --log-level=debug'],
                            env={**os.environ, "LABELSIEVE_PYTHON": str(stub)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    pid, *argv = record.read_text().splitlines()
    assert argv == [str(run_sh.parent / "main.py"), "/tmp/x.sock", "--log-level=debug"]
    assert pid == result.stdout.strip()  # exec all the way down: viam-server's SIGTERM reaches the interpreter


def test_a_grounding_detector_serves_as_the_filters_proposer_in_process() -> None:
    """`await detect(...)` runs the model on a worker thread, so the detector plugs into `AutoLabelFilter` as it is."""
    from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
    from labelsieve.verify import Verdict

    threads: list[str] = []

    class Recording(ScriptedBackend):
        def infer(self, images: list[Image.Image], text: Any, input_size: int) -> list[Any]:
            threads.append(threading.current_thread().name)
            return super().infer(images, text, input_size)

    det = scripted(Recording(BOXES, SCORES))
    config = FilterConfig.parse("labeler", {"detector": "det", "verifier": "vlm", "rules": [
        {"detect": "dog", "question": "Brown?", "label": "brown_dog"}]})

    async def propose(frame: Frame) -> Any:
        (found,) = await det.detect([frame.image], config.detect_classes)
        return found

    async def verify(crops: Any, questions: Any) -> list[Verdict]:
        return [Verdict("yes", 0.5) for _ in crops]

    async def run() -> Any:
        try:
            return await AutoLabelFilter(config, propose, verify).examine(Frame(frame()), gate=False)
        finally:
            await det.close()

    decision = asyncio.run(run())
    assert decision.detections.class_name.tolist() == ["brown_dog"] and decision.trace[0].answer == "yes"
    assert threads and threading.main_thread().name not in threads
