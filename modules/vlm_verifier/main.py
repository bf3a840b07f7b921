"""Viam shell over `labelsieve.verify`: a vision service answering yes / no / unsure about a crop.

    get_classifications(crop, 1, extra={"question": "Is this person wearing glasses on their face?"})
    do_command({"verify": {"crops": [{"image": "<base64 jpeg/png>", "question": "..."}, ...]}})

A local (transformers) model lives in the resource's `ModelSlot`, so a reconfigure that keeps the model loads nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Classification
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.services.vision import Vision
from viam.utils import ValueTypes

from labelsieve import images
from labelsieve.errors import InputError
from labelsieve.models import ModelSlot
from labelsieve.verify import Verifier, VerifierConfig
from labelsieve.viam.commands import command_of, parse_verify
from labelsieve.viam.convert import attributes_of, camera_frame
from labelsieve.viam.resource import camera_dependency, labelsieve_resource, requires

# A module has no terminal: transformers' "Loading weights" and hub download bars would reach the runtime's log as
# stderr warnings. Read by huggingface_hub when transformers is first imported (lazily, for the first model).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SUPPORTED = ("get_classifications and get_classifications_from_camera with extra={'question': ...}, get_properties, "
             "and do_command({'verify': {'crops': [{'image': <base64>, 'question': ...}, ...]}})")


@labelsieve_resource(SUPPORTED)
class VlmVerifierService(Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:vlm-verifier"
    verifier: Verifier
    camera: Camera | None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = VerifierConfig.parse(config.name, attributes_of(config))
        if parsed.backend == "openai":
            parsed.api_key(config.name)  # a missing key fails `labelsieve validate`, not the first request
        return requires(parsed.camera_name)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        parsed = VerifierConfig.parse(config.name, attributes_of(config))
        self.verifier = Verifier(parsed, config.name, slot=ModelSlot.for_resource(config.name))
        self.verifier.start()  # weights load on a worker thread; requests wait for them, the event loop does not
        self.camera = camera_dependency(dependencies, parsed.camera_name)
        return self

    async def _classify(self, image: ViamImage, count: int, extra: Mapping[str, Any] | None) -> list[Classification]:
        crop = await asyncio.to_thread(images.decode, image.data, where=f"{self.name}: the image")
        if count < 1:
            return []
        question = (extra or {}).get("question")
        if question is not None and not isinstance(question, str):
            raise InputError(f"{self.name}: extra.question must be a string, got {question!r}")
        return [Classification(class_name=v.answer, confidence=v.confidence)
                for v in await self.verifier.verify([crop], question)]

    async def get_classifications(self, image: ViamImage, count: int, *, extra: Mapping[str, ValueTypes] | None = None,
                                  timeout: float | None = None, **kwargs: Any) -> list[Classification]:
        return await self._classify(image, count, extra)

    async def get_classifications_from_camera(self, camera_name: str, count: int, *,
                                              extra: Mapping[str, ValueTypes] | None = None, timeout: float | None = None,
                                              **kwargs: Any) -> list[Classification]:
        frame = await camera_frame(self.name, self.camera, self.verifier.config.camera_name, camera_name)
        return await self._classify(frame, count, extra)

    async def do_command(self, command: Mapping[str, ValueTypes], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, ValueTypes]:
        body = command_of(self.name, command, "verify", SUPPORTED)
        request = await asyncio.to_thread(parse_verify, self.name, body)  # base64 and image decoding, off the loop
        questions = [q or self.verifier.config.default_question for q in request.questions]
        verdicts = await self.verifier.verify(request.crops, questions)
        return {"verdicts": [v.as_dict() for v in verdicts]}

    async def get_properties(self, *, extra: Mapping[str, ValueTypes] | None = None, timeout: float | None = None,
                             **kwargs: Any) -> Vision.Properties:
        return Vision.Properties(classifications_supported=True, detections_supported=False,
                                 object_point_clouds_supported=False)

    async def close(self) -> None:
        await self.verifier.close()


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
