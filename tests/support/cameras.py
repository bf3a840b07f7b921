"""An in-process camera for the data manager (no module process): each frame's bytes carry a serial number, so a test can
count what was captured, lost or duplicated. The data manager calls it as it calls a viam-sdk camera client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from grpclib import GRPCError, Status
from viam.media.video import CameraMimeType, NamedImage
from viam.proto.common import ResponseMetadata

from labelsieve.capture.manager import CaptureMethod

__all__ = ["SerialCamera", "get_images_method"]


class SerialCamera:
    """`get_images` answers one PNG-typed image (viam-sdk scans a JPEG for its size, slowly over large padding): `prefix`, the serial number as 8 ASCII digits, then `padding` bytes."""

    def __init__(self, prefix: bytes = b"", padding: int = 0, frames: int | None = None) -> None:
        self.prefix, self.padding, self.frames = prefix, b"\0" * padding, frames
        self.served = 0
        self.exhausted = asyncio.Event()

    async def get_images(self, *, filter_source_names: Sequence[str] | None = None, extra: Any = None,
                         **kwargs: Any) -> tuple[list[NamedImage], ResponseMetadata]:
        if self.frames is not None and self.served >= self.frames:
            self.exhausted.set()
            raise GRPCError(Status.OUT_OF_RANGE, "cam has no more frames")  # what a media camera answers at its end
        self.served += 1
        data = self.prefix + b"%08d" % self.served + self.padding
        return [NamedImage("cam", data, CameraMimeType.PNG)], ResponseMetadata()


def get_images_method(hz: float, resource: str = "cam") -> CaptureMethod:
    return CaptureMethod.from_service_configs(resource, "rdk:component:camera", [
        {"type": "data_manager", "attributes": {"capture_methods": [{"method": "GetImages", "capture_frequency_hz": hz}]}}])[0]
