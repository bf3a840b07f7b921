"""labelsieve:camera:media: plays an image folder or glob, a video file or a webcam (see labelsieve.camera.media)."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
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
from labelsieve.errors import UnsupportedError
from labelsieve.viam.convert import attributes_of
from labelsieve.viam.errors import grpc_errors


class MediaCamera(Camera, EasyResource):
    MODEL: ClassVar = "labelsieve:camera:media"
    source: MediaSource

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        MediaConfig.parse(config.name, attributes_of(config))
        return [], []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        camera = cls(config.name)
        camera.source = MediaSource(MediaConfig.parse(config.name, attributes_of(config)))
        return camera

    @grpc_errors
    async def get_images(self, *, filter_source_names: Sequence[str] | None = None, extra: Mapping[str, Any] | None = None,
                         timeout: float | None = None, **kwargs: Any) -> tuple[Sequence[NamedImage], ResponseMetadata]:
        frame = await asyncio.to_thread(self.source.read)
        captured = ResponseMetadata(captured_at=datetime_to_timestamp(datetime.now(timezone.utc)))
        return [NamedImage(frame.name, frame.data, CameraMimeType.from_string(frame.mime_type))], captured

    @grpc_errors
    async def get_point_cloud(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                              **kwargs: Any) -> tuple[bytes, str]:
        raise UnsupportedError(f"{self.name} plays 2D media and has no point clouds; call get_images")

    @grpc_errors
    async def get_properties(self, *, timeout: float | None = None, **kwargs: Any) -> Camera.Properties:
        return GetPropertiesResponse(supports_pcd=False, mime_types=[self.source.config.mime_type],
                                     frame_rate=self.source.frame_rate)

    async def close(self) -> None:
        """Idempotent: the SDK closes a resource before every reconfigure."""
        await asyncio.to_thread(self.source.close)


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
