"""labelsieve:camera:media: plays an image folder or glob, a video file or a webcam (see labelsieve.camera.media).

Every image is named after the camera resource, never after its file: viam-server's GetImages collector turns a source
name into a label, so a per-file name would give each captured image its own junk label. The file a frame came from is
answered by `do_command({"last_frame": {}})`.
"""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from viam.components.camera import Camera
from viam.media.video import CameraMimeType, NamedImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName, ResponseMetadata
from viam.proto.component.camera import GetPropertiesResponse
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.utils import datetime_to_timestamp

from labelsieve.camera.media import MediaConfig, MediaSource
from labelsieve.viam.commands import command_of
from labelsieve.viam.convert import attributes_of
from labelsieve.viam.resource import labelsieve_resource

SUPPORTED = "get_images, get_properties and do_command {\"last_frame\": {}} (the file or frame last served)"


@labelsieve_resource(SUPPORTED)
class MediaCamera(Camera, EasyResource):
    MODEL: ClassVar = "labelsieve:camera:media"
    source: MediaSource

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        MediaConfig.parse(config.name, attributes_of(config))
        return [], []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.source = MediaSource(MediaConfig.parse(config.name, attributes_of(config)))
        return self

    async def get_images(self, *, filter_source_names: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None,
                         timeout: float | None = None, **kwargs: Any) -> tuple[Sequence[NamedImage], ResponseMetadata]:
        captured = ResponseMetadata(captured_at=datetime_to_timestamp(datetime.now(UTC)))
        if filter_source_names and self.name not in filter_source_names:
            return [], captured  # the one source is not among those asked for
        frame = await asyncio.to_thread(self.source.read)
        return [NamedImage(self.name, frame.data, CameraMimeType.from_string(frame.mime_type))], captured

    async def get_properties(self, *, timeout: float | None = None, **kwargs: Any) -> Camera.Properties:
        return GetPropertiesResponse(supports_pcd=False, mime_types=[self.source.config.mime_type],
                                     frame_rate=self.source.frame_rate)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        command_of(self.name, command, "last_frame", SUPPORTED)
        last = self.source.last
        return {"last_frame": None if last is None else
                {"name": last.name, "width": last.width, "height": last.height, "mime_type": last.mime_type}}

    async def close(self) -> None:
        """Idempotent: the SDK closes a resource before every reconfigure."""
        await asyncio.to_thread(self.source.close)


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
