"""Test-only models for data capture: a vision service standing in for the auto-label filter, whose CaptureAllFromCamera
follows a script per call (`keep` returns the camera's frame with set detections and provenance, `slow` does so after a
while, `filter` raises NoCaptureToStoreError, `fail` raises another error; overlapping calls are an error), and a camera
with two views (a JPEG and a PNG)."""

import asyncio
import io
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from PIL import Image
from viam.components.camera import Camera
from viam.errors import NoCaptureToStoreError
from viam.media.video import CameraMimeType, NamedImage, ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName, ResponseMetadata
from viam.proto.service.vision import Classification, Detection
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.resource.easy_resource import stub_model as stub
from viam.services.vision import CaptureAllResult, Vision
from viam.utils import struct_to_dict

#: (label, confidence, pixel box as fractions of the frame) of every kept frame, and the provenance the filter attaches.
DETECTIONS = (("dog", 0.9, (0.25, 0.5, 0.75, 1.0)), ("cat", 0.3, (0.0, 0.0, 0.5, 0.5)))


@stub
class CaptureStub(Vision, EasyResource):
    MODEL: ClassVar = "test:vision:capture-stub"
    camera: Camera
    script: list[str]
    calls: int = 0
    busy: bool = False

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        return [struct_to_dict(config.attributes)["camera_name"]], []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        stub_ = cls(config.name)
        stub_.camera = next(d for d in dependencies.values() if isinstance(d, Camera))
        stub_.script = list(struct_to_dict(config.attributes).get("script", ["keep"]))
        return stub_

    async def capture_all_from_camera(self, camera_name: str, return_image: bool = False,
                                      return_classifications: bool = False, return_detections: bool = False,
                                      return_object_point_clouds: bool = False,
                                      return_detections_3d: bool = False, *, extra: Mapping[str, Any] | None = None,
                                      timeout: float | None = None, **kwargs: Any) -> CaptureAllResult:
        if self.busy:
            raise RuntimeError("overlapping calls: a slow capture must not pile up calls")
        self.busy = True
        try:
            return await self._capture(extra or {})
        finally:
            self.busy = False

    async def _capture(self, extra: Mapping[str, Any]) -> CaptureAllResult:
        step = self.script[self.calls % len(self.script)]
        self.calls += 1
        if not extra.get("fromDataManagement"):
            raise ValueError("expected extra.fromDataManagement from the data manager")
        if step == "slow":  # several capture periods long
            await asyncio.sleep(0.3)
        if step == "filter":
            raise NoCaptureToStoreError()
        if step == "fail":
            raise RuntimeError("the verifier is unreachable")
        images, _ = await self.camera.get_images()
        width, height = Image.open(io.BytesIO(images[0].data)).size
        detections = [Detection(class_name=label, confidence=score, x_min=int(x0 * width), y_min=int(y0 * height),
                                x_max=int(x1 * width), y_max=int(y1 * height))
                      for label, score, (x0, y0, x1, y1) in DETECTIONS]
        provenance = [{"proposer": "stub", "verdict": "yes", "call": self.calls, "box": i} for i in range(len(DETECTIONS))]
        return CaptureAllResult(image=ViamImage(images[0].data, CameraMimeType.from_string(images[0].mime_type)),
                                detections=detections,
                                classifications=[Classification(class_name="outdoor", confidence=0.8)],
                                extra={"provenance": provenance})


@stub
class TwoViews(Camera, EasyResource):
    """get_images -> "left" (JPEG) and "right" (PNG), honouring filter_source_names."""

    MODEL: ClassVar = "test:camera:two-views"

    async def get_images(self, *, filter_source_names: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None,
                         timeout: float | None = None, **kwargs: Any) -> tuple[Sequence[NamedImage], ResponseMetadata]:
        views = []
        for name, fmt, mime in (("left", "JPEG", CameraMimeType.JPEG), ("right", "PNG", CameraMimeType.PNG)):
            if not filter_source_names or name in filter_source_names:
                buffer = io.BytesIO()
                Image.new("RGB", (64, 48), "white").save(buffer, format=fmt)
                views.append(NamedImage(name, buffer.getvalue(), mime))
        return views, ResponseMetadata()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
