"""labelsieve:vision:fast-detector: a trained YOLO (ONNX via onnxruntime, or .pt via ultralytics) as a vision service.

A shell over `labelsieve.detect.source.WatchedModel`, whose model lives in the resource's `ModelSlot`: `new()` returns at
once while it loads in the background, and the watcher swaps in a new model (after it answered a frame) every
`poll_interval_s` at most, so calls never fail during a swap.

Only the `.pt` path imports torch; with an ONNX model this process never does (`do_command {"status": {}}` says so).
"""

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from PIL import Image
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Detection
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.services.vision import Vision

from labelsieve import images
from labelsieve.detect.fast import FastDetectorConfig
from labelsieve.detect.source import WatchedModel
from labelsieve.detections import Detections
from labelsieve.models import ModelSlot
from labelsieve.viam.commands import command_of, detect_reply, parse_detect
from labelsieve.viam.convert import attributes_of, detections_to_viam
from labelsieve.viam.resource import CameraDetector, camera_dependency, labelsieve_resource, requires

log = logging.getLogger(__name__)

SUPPORTED = ("get_detections, get_detections_from_camera, capture_all_from_camera (image and detections), "
             "get_properties, do_command {\"detect\": {\"images\": [base64...]}} and {\"status\": {}}")


@labelsieve_resource(SUPPORTED)
class FastDetectorService(CameraDetector, Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:fast-detector"
    config: FastDetectorConfig
    camera: Camera | None
    model: WatchedModel
    problem: str  # why the watcher is not serving the newest model (a broken file, storage down); "" when it is

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = FastDetectorConfig.parse(config.name, attributes_of(config))
        return requires(parsed.camera_name)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.config = FastDetectorConfig.parse(config.name, attributes_of(config))
        self.camera = camera_dependency(dependencies, self.config.camera_name)
        cfg = self.config
        self.problem = ""  # not None: a Struct's null comes back to SDK clients as 0
        self.model = WatchedModel(cfg.model_path, device=cfg.device, poll_interval_s=cfg.poll_interval_s,
                                  name=config.name, slot=ModelSlot.for_resource(config.name))
        self.model.on_problem(lambda text: setattr(self, "problem", text))
        self.model.on_swap(lambda version, model: setattr(self, "problem", ""))
        self.model.start()
        return self

    async def _detect(self, frame: Image.Image) -> Detections:
        _, model = await self.model.get()
        cfg = self.config
        return await asyncio.to_thread(model.detect, frame, cfg.confidence, cfg.iou, cfg.max_detections)

    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        """A JPEG, PNG or raw RGBA frame, opened and decoded on a worker thread (a JPEG at the scale the model needs)."""
        _, model = await self.model.get()
        cfg, where = self.config, f"{self.name}: the image"

        def detect() -> list[Detection]:
            frame = images.open_checked(image.data, where=where)
            size = frame.size  # before a reduced-scale decode changes it
            return detections_to_viam(model.detect(frame, cfg.confidence, cfg.iou, cfg.max_detections, where), *size)

        return await asyncio.to_thread(detect)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"detect": {"images": [base64...]}}` -> boxes per image; `{"status": {}}` -> the model served now, its
        classes, why a newer model is not served (`problem`), and whether this process has imported torch or
        ultralytics (a light install must not)."""
        if "status" in command:
            command_of(self.name, command, "status", SUPPORTED)
            version, model = await self.model.get()
            dataset = model.info.get("dataset", {})
            return {"model_path": self.config.model_path, "version": version, "model_id": model.info.get("id"),
                    "dataset": {"name": dataset.get("name"), "id": dataset.get("id")},
                    "classes": list(model.names), "backend": type(model).__name__, "problem": self.problem,
                    "imported": {name: name in sys.modules for name in ("torch", "ultralytics", "transformers")}}
        body = command_of(self.name, command, "detect", SUPPORTED)
        request = await asyncio.to_thread(parse_detect, self.name, body)
        results = [await self._detect(frame) for frame in request.images]
        return detect_reply(results)

    async def close(self) -> None:
        """Idempotent: the SDK closes the resource and calls `new()` again on every reconfigure."""
        self.model.stop()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
