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
from typing import Any, TypeVar

from viam import logging as viam_logging
from viam.components.camera import Camera
from viam.resource.base import ResourceBase

from labelsieve.errors import UnsupportedError
from labelsieve.viam.errors import grpc_errors

__all__ = ["camera_dependency", "labelsieve_resource", "requires"]

R = TypeVar("R", bound=type)

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

    def decorate(cls: R) -> R:
        model = getattr(cls, "MODEL", cls.__name__)
        for name in sorted(getattr(cls, "__abstractmethods__", ())):
            setattr(cls, name, _unsupported(name, model, supported))
        if getattr(cls, "do_command") is ResourceBase.do_command:
            cls.do_command = _unsupported("do_command", model, supported)
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
