"""A third-party module as published: a model of its own API (`acme:component:gizmo`), and a sensor with an OPTIONAL
dependency on a camera (the second list `validate_config` returns), which reports whether it got one."""

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from viam.components.camera import Camera
from viam.components.sensor import Sensor
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.utils import struct_to_dict

sys.path.insert(0, str(Path(__file__).parent))
from api import Gizmo


class MyGizmo(Gizmo, EasyResource):
    MODEL: ClassVar = "acme:demo:mygizmo"

    async def do_one(self, arg: str) -> str:
        return f"{self.name} did {arg}"

    async def count(self, upto: int) -> AsyncIterator[int]:  # type: ignore[override]
        for n in range(upto):
            yield n


class Watcher(Sensor, EasyResource):
    MODEL: ClassVar = "acme:demo:watcher"
    camera: Camera | None = None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        return [], [struct_to_dict(config.attributes).get("camera_name", "cam")]

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        watcher = cls(config.name)
        watcher.camera = next((d for d in dependencies.values() if isinstance(d, Camera)), None)
        return watcher

    async def get_readings(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                           **kwargs: Any) -> Mapping[str, Any]:
        return {"camera": self.camera.name if self.camera else ""}


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
