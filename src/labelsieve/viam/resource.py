"""What every labelsieve Viam shell shares, so a shell is the SDK's EasyResource idiom and little else.

    @labelsieve_resource(supported="get_detections, do_command {\"detect\": ...}")
    class MyDetector(Vision, EasyResource):
        MODEL: ClassVar = "labelsieve:vision:my-detector"
        async def get_detections(self, image, *, extra=None, timeout=None, **kwargs): ...

The decorator fills each abstract method the shell leaves out (and `do_command`, if it does not define one) with a stub
answering UNIMPLEMENTED that names what the resource does offer, and wraps every public async method with the one error
seam (`labelsieve.viam.errors.grpc_errors`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from viam import logging as viam_logging
from viam.components.camera import Camera
from viam.media.video import ViamImage
from viam.proto.service.vision import Detection, GetPropertiesResponse
from viam.resource.base import ResourceBase
from viam.services.vision import CaptureAllResult

from labelsieve.errors import UnsupportedError
from labelsieve.viam.convert import camera_frame
from labelsieve.viam.errors import grpc_errors
from labelsieve.viam.logs import send_logs_on_the_parent_loop

__all__ = ["CameraDetector", "camera_dependency", "labelsieve_resource", "requires"]

R = TypeVar("R", bound=type[ResourceBase])

_NOT_WRAPPED = frozenset({"close", "stop"})  # lifecycle, not gRPC methods


def _unsupported(method: str, model: object, supported: str) -> Callable[..., Any]:
    async def unsupported(self: ResourceBase, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedError(f"{self.name}: {method} is not offered by {model}; supported: {supported}")

    unsupported.__name__ = unsupported.__qualname__ = method
    return unsupported


def labelsieve_resource(supported: str) -> Callable[[R], R]:
    """Class decorator; `supported` is the sentence an UNIMPLEMENTED answer ends with. It also routes the package's own
    log records through viam's logging: in a module process they then reach the parent's robot Log at their own level
    (a model's "loaded ..." line included), where Python's last-resort handler would print only warnings, unlevelled."""
    viam_logging.getLogger("labelsieve")
    send_logs_on_the_parent_loop()

    def decorate(cls: R) -> R:
        model = getattr(cls, "MODEL", cls.__name__)
        for name in sorted(getattr(cls, "__abstractmethods__", ())):
            setattr(cls, name, _unsupported(name, model, supported))
        if cls.do_command is ResourceBase.do_command:
            setattr(cls, "do_command", _unsupported("do_command", model, supported))  # noqa: B010 - a class patch
        cls.__abstractmethods__ = frozenset()
        for name, value in list(vars(cls).items()):
            if (not name.startswith("_") and name not in _NOT_WRAPPED and inspect.iscoroutinefunction(value)
                    and not getattr(value, "__labelsieve_grpc_errors__", False)):
                setattr(cls, name, grpc_errors(value))
        return cls

    return decorate


def requires(*names: str | None) -> tuple[list[str], list[str]]:
    """`validate_config`'s answer: the resources named (those set) as required dependencies, none optional."""
    return [n for n in names if n], []


def camera_dependency(dependencies: Mapping[Any, ResourceBase], name: str | None) -> Camera | None:
    """The configured camera among `new()`'s dependencies (`validate_config` listed it), or None when none is set."""
    return dependencies[Camera.get_resource_name(name)] if name else None  # type: ignore[return-value]


class CameraDetector:
    """What a box detector's shell derives from its `get_detections`: the same on its camera's frame, data capture's
    `capture_all_from_camera` (image and boxes), and truthful properties. The shell sets `camera` and `config.camera_name`."""

    name: str
    camera: Camera | None
    config: Any

    if TYPE_CHECKING:  # the shell's own; declared here only for the type checker, so Vision's stays abstract
        async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                                 timeout: float | None = None, **kwargs: Any) -> list[Detection]: ...

    async def _camera_frame(self, camera_name: str) -> ViamImage:
        return await camera_frame(self.name, self.camera, self.config.camera_name, camera_name)

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
                             **kwargs: Any) -> GetPropertiesResponse:
        return GetPropertiesResponse(classifications_supported=False, detections_supported=True,
                                     object_point_clouds_supported=False)
