"""labelsieve:vision:grounding-detector: open-vocabulary box proposals (see labelsieve.detect).

`new()` runs inside AddResource and must return quickly: the model lives in the resource's `ModelSlot`, which loads it in
the background, or hands over at once the one a reconfigure's closed object was using (a threshold edit loads nothing;
a `model` edit loads the new weights while the old ones keep serving). A failed load surfaces on each call as
FAILED_PRECONDITION with the loader's message. Inference runs in `asyncio.to_thread`, never on the event loop.
"""

import asyncio
import os
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
from labelsieve.detect import GroundingDetector, GroundingDetectorConfig
from labelsieve.detections import Detections
from labelsieve.models import ModelSlot
from labelsieve.viam.commands import command_of, detect_reply, parse_detect
from labelsieve.viam.convert import attributes_of, detections_to_viam
from labelsieve.viam.resource import CameraDetector, camera_dependency, labelsieve_resource, requires

# A module has no terminal: transformers' "Loading weights" and hub download bars would reach the runtime's log as
# stderr warnings. Read by huggingface_hub when transformers is first imported (lazily, for the first model).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SUPPORTED = ("get_detections, get_detections_from_camera, capture_all_from_camera (image and detections), "
             "get_properties and do_command {\"detect\": {\"images\": [base64...], \"query\": \"...\"}}")


@labelsieve_resource(SUPPORTED)
class GroundingDetectorService(CameraDetector, Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:grounding-detector"
    config: GroundingDetectorConfig
    detector: GroundingDetector
    camera: Camera | None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = GroundingDetectorConfig.parse(config.name, attributes_of(config))
        return requires(parsed.camera_name)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.config = GroundingDetectorConfig.parse(config.name, attributes_of(config))
        self.camera = camera_dependency(dependencies, self.config.camera_name)
        self.detector = GroundingDetector(self.config, config.name, ModelSlot.for_resource(config.name))
        self.detector.start()
        return self

    async def _detect(self, frames: Sequence[Image.Image], query: Any) -> list[Detections]:
        """`query` comes straight from a request's extra or command; the detector rejects a malformed one (InputError)."""
        return await self.detector.detect(frames, query)

    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        frame = await asyncio.to_thread(images.decode, image.data, where=f"{self.name}: the image")
        (dets,) = await self._detect([frame], (extra or {}).get("query"))
        return detections_to_viam(dets, *frame.size)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"detect": {"images": [base64 JPEG/PNG, ...], "query": "..."}}` -> `{"detect": [[box, ...] per image]}`."""
        body = command_of(self.name, command, "detect", SUPPORTED)
        request = await asyncio.to_thread(parse_detect, self.name, body)  # base64 and image decoding, off the loop
        return detect_reply(await self._detect(request.images, request.query))

    async def close(self) -> None:
        """The SDK closes the object before every reconfigure; the slot keeps the model for the `new()` that follows."""
        await self.detector.close()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
