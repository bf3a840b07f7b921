"""labelsieve:vision:grounding-detector: open-vocabulary box proposals (see labelsieve.detect).

`new()` runs inside AddResource and must return quickly, so weights load on a background thread; every call awaits that
load, and a failed load surfaces on each call as FAILED_PRECONDITION with the loader's message. Inference runs in
`asyncio.to_thread`, never on the module's event loop.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, Self

from PIL import Image
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import PointCloudObject, ResourceName
from viam.proto.service.vision import Classification, Detection, Detection3D, GetPropertiesResponse
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.services.vision import CaptureAllResult, Vision

from labelsieve.detect import GroundingDetector, GroundingDetectorConfig
from labelsieve.detections import Detections
from labelsieve.errors import InputError, UnsupportedError
from labelsieve.viam.convert import attributes_of, camera_frame, decode_base64_image, decode_image, detections_to_viam
from labelsieve.viam.errors import grpc_errors

log = logging.getLogger(__name__)

SUPPORTED = ("get_detections, get_detections_from_camera, capture_all_from_camera (image and detections), "
             "get_properties and do_command {\"detect\": {\"images\": [base64...], \"query\": \"...\"}}")


class GroundingDetectorService(Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:grounding-detector"
    config: GroundingDetectorConfig
    detector: GroundingDetector
    camera: Camera | None
    _loading: Future[None]

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = GroundingDetectorConfig.parse(config.name, attributes_of(config))
        return ([parsed.camera_name] if parsed.camera_name else []), []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        service = cls(config.name)
        service.config = GroundingDetectorConfig.parse(config.name, attributes_of(config))
        camera = service.config.camera_name
        service.camera = dependencies[Camera.get_resource_name(camera)] if camera else None  # type: ignore[assignment]
        service.detector = GroundingDetector(service.config, config.name)
        service._loading = service.detector.load_in_background()
        service._loading.add_done_callback(service._log_load)
        return service

    def _log_load(self, loading: Future[None]) -> None:
        if (exc := loading.exception()) is not None:
            log.error("%s: the model did not load: %s", self.name, exc)

    async def _detect(self, images: Sequence[Image.Image], query: Any) -> list[Detections]:
        """`query` comes straight from a request's extra or command; the detector rejects a malformed one (InputError)."""
        await asyncio.wrap_future(self._loading)
        return await asyncio.to_thread(self.detector.detect, images, query)

    async def _camera_frame(self, camera_name: str) -> ViamImage:
        return await camera_frame(self.name, self.camera, self.config.camera_name, camera_name)

    @grpc_errors
    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        frame = decode_image(image)
        (dets,) = await self._detect([frame], (extra or {}).get("query"))
        return detections_to_viam(dets, *frame.size)

    @grpc_errors
    async def get_detections_from_camera(self, camera_name: str, *, extra: Mapping[str, Any] | None = None,
                                         timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        return await self.get_detections(await self._camera_frame(camera_name), extra=extra)

    @grpc_errors
    async def capture_all_from_camera(self, camera_name: str, return_image: bool = False,
                                      return_classifications: bool = False, return_detections: bool = False,
                                      return_object_point_clouds: bool = False, return_detections_3d: bool = False, *,
                                      extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                                      **kwargs: Any) -> CaptureAllResult:
        """Classifications, point clouds and 3D detections are not produced; their fields stay empty."""
        image = await self._camera_frame(camera_name)
        detections = await self.get_detections(image, extra=extra) if return_detections else None
        return CaptureAllResult(image=image if return_image else None, detections=detections)

    @grpc_errors
    async def get_properties(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                             **kwargs: Any) -> Vision.Properties:
        return GetPropertiesResponse(classifications_supported=False, detections_supported=True,
                                     object_point_clouds_supported=False)

    @grpc_errors
    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"detect": {"images": [base64 JPEG/PNG, ...], "query": "..."}}` -> `{"detect": [[box, ...] per image]}`."""
        if set(command) != {"detect"} or not isinstance(command["detect"], Mapping):
            raise UnsupportedError(f"{self.name}: unknown command {sorted(command)}; supported: {SUPPORTED}")
        request = command["detect"]
        encoded = request.get("images")
        if not isinstance(encoded, list) or not encoded:
            raise InputError(f"{self.name}: 'detect.images' must be a non-empty list of base64 strings")
        frames = [decode_base64_image(e, f"{self.name}: detect.images[{i}]") for i, e in enumerate(encoded)]
        results = await self._detect(frames, request.get("query"))
        return {"detect": [
            [{"x_min": d.x_min, "y_min": d.y_min, "x_max": d.x_max, "y_max": d.y_max, "confidence": d.confidence,
              "class_name": d.class_name} for d in detections_to_viam(dets, *frame.size)]
            for dets, frame in zip(results, frames)
        ]}

    @grpc_errors
    async def get_classifications(self, image: ViamImage, count: int, *, extra: Mapping[str, Any] | None = None,
                                  timeout: float | None = None, **kwargs: Any) -> list[Classification]:
        raise UnsupportedError(f"{self.name} proposes boxes and does not classify; supported: {SUPPORTED}")

    @grpc_errors
    async def get_classifications_from_camera(self, camera_name: str, count: int, *,
                                              extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                                              **kwargs: Any) -> list[Classification]:
        raise UnsupportedError(f"{self.name} proposes boxes and does not classify; supported: {SUPPORTED}")

    @grpc_errors
    async def get_object_point_clouds(self, camera_name: str, *, extra: Mapping[str, Any] | None = None,
                                      timeout: float | None = None, **kwargs: Any) -> list[PointCloudObject]:
        raise UnsupportedError(f"{self.name} works on 2D images and has no point clouds; supported: {SUPPORTED}")

    @grpc_errors
    async def get_detections_3d(self, camera_name: str, *, extra: Mapping[str, Any] | None = None,
                                timeout: float | None = None, **kwargs: Any) -> list[Detection3D]:
        raise UnsupportedError(f"{self.name} works on 2D images and has no 3D detections; supported: {SUPPORTED}")


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
