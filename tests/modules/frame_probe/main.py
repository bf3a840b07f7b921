"""Test-only models: a vision service that depends on a camera through the parent (module-to-module calls), and a motor
that counts Stop calls (robot StopAll)."""

import asyncio
import io
import os
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from PIL import Image
from viam.components.camera import Camera
from viam.components.motor import Motor
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Classification
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.resource.easy_resource import stub_model as stub
from viam.services.vision import Vision
from viam.utils import struct_to_dict

from labelsieve.errors import ConfigError


@stub
class FrameProbe(Vision, EasyResource):
    """get_classifications_from_camera -> one class "<width>x<height>" read from the camera dependency."""

    MODEL: ClassVar = "test:vision:frame-probe"
    camera: Camera
    generation: float = 0

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        attributes = struct_to_dict(config.attributes)
        if attributes.get("crash_in") == "validate":  # a module dying mid-call, e.g. killed for memory
            os._exit(7)
        if attributes.get("validating_file"):  # tells a test that the slow check has begun
            Path(attributes["validating_file"]).touch()
        time.sleep(attributes.get("validate_seconds", 0))  # a slow check, to interrupt start-up during it
        camera = attributes.get("camera_name")
        if not camera:
            raise ConfigError(config.name, "attributes.camera_name", "is required")
        return [camera], []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        if struct_to_dict(config.attributes).get("crash_in") == "new":
            os._exit(7)
        probe = cls(config.name)
        probe.generation = struct_to_dict(config.attributes).get("generation", 0)
        probe.camera = next(d for d in dependencies.values() if isinstance(d, Camera))
        probe.logger.info("probe is watching camera %s", probe.camera.name)  # reaches the runtime through robot Log
        return probe

    async def get_classifications_from_camera(self, camera_name: str, count: int, *, extra: Mapping[str, Any] | None = None,
                                              timeout: float | None = None, **kwargs: Any) -> list[Classification]:
        images, _ = await self.camera.get_images()
        width, height = Image.open(io.BytesIO(images[0].data)).size
        return [Classification(class_name=f"{width}x{height}", confidence=1.0)]

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """-> the `generation` attribute it was made with, so a test sees a reconfigure land."""
        return {"generation": self.generation}


@stub
class FakeMotor(Motor, EasyResource):
    """Counts Stop calls (its position), so a test can see robot StopAll reach a module's actuator."""

    MODEL: ClassVar = "test:motor:fake"
    stops: int = 0

    async def stop(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        self.stops += 1

    async def get_position(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                           **kwargs: Any) -> float:
        return float(self.stops)


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
