"""Viam shell over `labelsieve.verify`: a vision service answering yes / no / unsure about a crop.

    get_classifications(crop, 1, extra={"question": "Is this person wearing glasses on their face?"})
    do_command({"verify": {"crops": [{"image": "<base64 jpeg/png>", "question": "..."}, ...]}})
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from typing_extensions import Self
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import PointCloudObject, ResourceName
from viam.proto.service.vision import Classification, Detection
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.resource.types import Model
from viam.services.vision import CaptureAllResult, Vision
from viam.utils import ValueTypes

from labelsieve.errors import InputError, UnsupportedError
from labelsieve.verify import Verdict, Verifier, VerifierConfig
from labelsieve.viam.convert import attributes_of, camera_frame, decode_base64_image, decode_image
from labelsieve.viam.errors import grpc_errors


def _config(config: ComponentConfig) -> VerifierConfig:
    return VerifierConfig.parse(config.name, attributes_of(config))


def _classification(verdict: Verdict) -> Classification:
    return Classification(class_name=verdict.answer, confidence=verdict.confidence)


class VlmVerifierService(Vision, EasyResource):
    MODEL: ClassVar[Model] = "labelsieve:vision:vlm-verifier"  # type: ignore[assignment]

    verifier: Verifier
    camera: Camera | None = None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = _config(config)
        if parsed.backend == "openai":
            parsed.api_key(config.name)  # a missing key fails `labelsieve validate`, not the first request
        return ([parsed.camera_name] if parsed.camera_name else []), []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        parsed = _config(config)
        self.verifier = Verifier(parsed, config.name)
        self.verifier.start()  # weights load on a worker thread; requests wait for them, the event loop does not
        if parsed.camera_name:
            self.camera = dependencies[Camera.get_resource_name(parsed.camera_name)]  # type: ignore[assignment]
        return self

    def _unsupported(self, method: str) -> UnsupportedError:
        return UnsupportedError(f"{self.name}: {method} is not offered by a VLM verifier; use get_classifications "
                                "with extra={'question': ...} or do_command({'verify': ...})")

    async def _classify(self, image: ViamImage, count: int, extra: Mapping[str, Any] | None) -> list[Classification]:
        try:
            crop = decode_image(image)
        except InputError as exc:
            raise InputError(f"{self.name}: {exc}") from exc
        if count < 1:
            return []
        question = (extra or {}).get("question")
        if question is not None and not isinstance(question, str):
            raise InputError(f"{self.name}: extra.question must be a string, got {question!r}")
        return [_classification(v) for v in await self.verifier.verify([crop], question)]

    @grpc_errors
    async def get_classifications(self, image: ViamImage, count: int, *, extra: Mapping[str, ValueTypes] | None = None,
                                  timeout: float | None = None, **kwargs: Any) -> list[Classification]:
        return await self._classify(image, count, extra)

    @grpc_errors
    async def get_classifications_from_camera(self, camera_name: str, count: int, *,
                                              extra: Mapping[str, ValueTypes] | None = None, timeout: float | None = None,
                                              **kwargs: Any) -> list[Classification]:
        frame = await camera_frame(self.name, self.camera, self.verifier.config.camera_name, camera_name)
        return await self._classify(frame, count, extra)

    @grpc_errors
    async def do_command(self, command: Mapping[str, ValueTypes], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, ValueTypes]:
        request = command.get("verify")
        if not isinstance(request, Mapping) or not isinstance(request.get("crops"), list):
            raise UnsupportedError(f"{self.name}: unknown command {sorted(command)}; expected "
                                   "{'verify': {'crops': [{'image': <base64>, 'question': ...}, ...]}}")
        crops, questions = [], []
        for i, item in enumerate(request["crops"]):
            if not isinstance(item, Mapping):
                raise InputError(f"{self.name}: verify.crops[{i}] must be an object with 'image' (base64) and 'question'")
            crops.append(decode_base64_image(item.get("image"), f"{self.name}: verify.crops[{i}].image"))
            questions.append(item.get("question") or request.get("question") or self.verifier.config.default_question)
        verdicts = await self.verifier.verify(crops, questions) if crops else []
        return {"verdicts": [v.as_dict() for v in verdicts]}

    @grpc_errors
    async def get_properties(self, *, extra: Mapping[str, ValueTypes] | None = None, timeout: float | None = None,
                             **kwargs: Any) -> Vision.Properties:
        return Vision.Properties(classifications_supported=True, detections_supported=False,
                                 object_point_clouds_supported=False)

    @grpc_errors
    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, ValueTypes] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        raise self._unsupported("get_detections")

    @grpc_errors
    async def get_detections_from_camera(self, camera_name: str, *, extra: Mapping[str, ValueTypes] | None = None,
                                         timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        raise self._unsupported("get_detections_from_camera")

    @grpc_errors
    async def capture_all_from_camera(self, camera_name: str, return_image: bool = False,
                                      return_classifications: bool = False, return_detections: bool = False,
                                      return_object_point_clouds: bool = False, return_detections_3d: bool = False, *,
                                      extra: Mapping[str, ValueTypes] | None = None, timeout: float | None = None,
                                      **kwargs: Any) -> CaptureAllResult:
        raise self._unsupported("capture_all_from_camera")

    @grpc_errors
    async def get_detections_3d(self, camera_name: str, *, extra: Mapping[str, ValueTypes] | None = None,
                                timeout: float | None = None, **kwargs: Any) -> list[Any]:
        raise self._unsupported("get_detections_3d")

    @grpc_errors
    async def get_object_point_clouds(self, camera_name: str, *, extra: Mapping[str, ValueTypes] | None = None,
                                      timeout: float | None = None, **kwargs: Any) -> list[PointCloudObject]:
        raise self._unsupported("get_object_point_clouds")

    async def close(self) -> None:
        await self.verifier.close()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
