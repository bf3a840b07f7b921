"""labelsieve:vision:fast-detector: a trained YOLO (ONNX via onnxruntime, or .pt via ultralytics) as a vision service.

The model lives in the resource's `ModelSlot`: `new()` returns at once while it loads in the background, and a watcher
thread checks `model_path` every `poll_interval_s` (a file's mtime and size, a directory's chosen file, a fleet URL's
`current` pointer). A new model loads beside the serving one and replaces it when ready, so calls never fail during a
swap. A local file must look the same on two polls in a row before it loads, so a copy still being written is not read.

Only the `.pt` path imports torch; with an ONNX model this process never does (`do_command {"status": {}}` says so).
"""

import asyncio
import logging
import sys
import threading
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
from labelsieve.detect.fast import FastDetectorConfig, FastModel, ModelSource, load_model
from labelsieve.detections import Detections
from labelsieve.errors import BackendUnavailable, LabelsieveError
from labelsieve.models import ModelKey, ModelSlot
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
    slot: ModelSlot[tuple[str, FastModel]]  # (the version it was loaded from, the model)
    source: ModelSource
    _stop: threading.Event

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = FastDetectorConfig.parse(config.name, attributes_of(config))
        return requires(parsed.camera_name)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.config = FastDetectorConfig.parse(config.name, attributes_of(config))
        self.camera = camera_dependency(dependencies, self.config.camera_name)
        self.slot = ModelSlot.for_resource(config.name)
        self.source = ModelSource(self.config.model_path)
        self._stop = threading.Event()
        self._load(self.source.cached_version())  # new() never waits on the network; the watcher looks further
        threading.Thread(target=self._watch, name=f"watch {config.name}", daemon=True).start()
        return self

    def _key(self, version: str) -> ModelKey:
        return ModelKey(model=self.config.model_path, device=self.config.device, extra=(("version", version),),
                        kind="fast-detector")

    def _load(self, version: str | None) -> None:
        """Load `version` beside the serving model; None (nothing cached yet) asks the source on the loading thread,
        and the watcher's next poll then finds the real version and hands over from the cache at once."""
        def factory() -> tuple[str, FastModel]:
            resolved = version or self.source.version()
            return resolved, load_model(self.source.fetch(resolved), self.config.device)

        self.slot.load(self._key(version or "first"), factory)

    def _watch(self) -> None:
        """Poll for a new model, load it on this thread, then hand it to the slot: calls keep the serving model until
        the new one is ready, and a broken new file or an unreachable store leaves them on it. Local files load once
        they look the same on two polls; fleet pointers at once (a deploy writes the model before the pointer)."""
        seen, broken, problem = None, None, ""
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                version = self.source.version()
                if self.slot.key == self._key(version) or version == broken or not (self.source.is_fleet or version == seen):
                    seen = version
                    continue
                seen = version
                log.info("%s: new model %s; loading it beside the current one", self.name, version)
                model = load_model(self.source.fetch(version), self.config.device)
            except LabelsieveError as exc:
                if str(exc) != problem:  # once per distinct problem, not once per poll
                    log.error("%s: still serving the current model: %s", self.name, exc)
                problem = str(exc)
                if not isinstance(exc, BackendUnavailable):
                    broken = seen  # a bad file is not retried until it changes again
                continue
            except Exception:  # a bug must not end the watcher: the next poll tries again
                log.exception("%s: checking for a new model failed; still serving the current model", self.name)
                continue
            problem = ""
            self.slot.load(self._key(version), lambda v=version, m=model: (v, m))

    async def _detect(self, frame: Image.Image) -> Detections:
        _, model = await self.slot.get()
        cfg = self.config
        return await asyncio.to_thread(model.detect, frame, cfg.confidence, cfg.iou, cfg.max_detections)

    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        frame = images.decode(image.data, where=f"{self.name}: the image")
        return detections_to_viam(await self._detect(frame), *frame.size)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"detect": {"images": [base64...]}}` -> boxes per image; `{"status": {}}` -> the model served now, its
        classes, and whether this process has imported torch or ultralytics (a light install must not)."""
        if "status" in command:
            command_of(self.name, command, "status", SUPPORTED)
            version, model = await self.slot.get()
            return {"model_path": self.config.model_path, "version": version,
                    "classes": list(model.names), "backend": type(model).__name__,
                    "imported": {name: name in sys.modules for name in ("torch", "ultralytics", "transformers")}}
        request = parse_detect(self.name, command_of(self.name, command, "detect", SUPPORTED))
        results = [await self._detect(frame) for frame in request.images]
        return detect_reply(results)

    async def close(self) -> None:
        """Idempotent: the SDK closes the resource and calls `new()` again on every reconfigure."""
        self._stop.set()
        self.slot.release()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
