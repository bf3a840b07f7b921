"""labelsieve:vision:autolabel-filter: keep a frame only where a detector and a verifier agree (see labelsieve.filter).

The shell adapts the two dependency services (Viam vision clients, any module's) to the filter core's callables:

    propose(frame)            -> detector.get_detections(frame, extra={"query": "<the rules' classes>"})
    verify(crops, questions)  -> verifier.do_command({"verify": {"crops": [...]}}) where the verifier offers it, else
                                 verifier.get_classifications(crop, 1, extra={"question": ...}) per crop, concurrently

For data capture, `capture_all_from_camera(..., extra={"fromDataManagement": true})` raises viam's
NoCaptureToStoreError when nothing was verified, so viam-server (or labelsieve's data manager) stores nothing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar

from grpclib import GRPCError, Status
from PIL import Image
from viam.components.camera import Camera
from viam.errors import NoCaptureToStoreError
from viam.media.video import CameraMimeType, ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Detection, GetPropertiesResponse
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.services.vision import CaptureAllResult, Vision
from viam.utils import from_dm_from_extra

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import BackendUnavailable
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.verify import Verdict
from labelsieve.viam.commands import command_of, verify_command
from labelsieve.viam.convert import attributes_of, camera_frame, detections_from_viam, detections_to_viam
from labelsieve.viam.resource import camera_dependency, labelsieve_resource, requires

log = logging.getLogger(__name__)

SUPPORTED = ("get_detections, get_detections_from_camera, capture_all_from_camera (image, verified detections and "
             "extra.provenance), get_properties and do_command {\"stats\": {}}")

T = TypeVar("T")


def _backend_error(exc: GRPCError) -> BackendUnavailable:
    """A dependency's gRPC failure as a labelsieve error, so the filter's reasons read 'UNAVAILABLE: ...'."""
    return BackendUnavailable(f"{exc.status.name}: {exc.message}")


async def _remote(call: Awaitable[T]) -> T:
    try:
        return await call
    except GRPCError as exc:
        raise _backend_error(exc) from exc


def _verdict(answer: object, confidence: object) -> Verdict:
    """Any class other than yes / no is "unsure": a verifier from elsewhere can never label by answering oddly."""
    score = float(confidence) if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) else 0.0
    return Verdict(answer if answer in ("yes", "no") else "unsure", score)  # type: ignore[arg-type]


class VisionStages:
    """The filter core's two stages over Viam vision services."""

    def __init__(self, config: FilterConfig, detector: Vision, verifier: Vision) -> None:
        self.config, self.detector, self.verifier = config, detector, verifier
        self.query = " ".join(f"{c}." for c in config.detect_classes)  # "person. car.", as grounding detectors read it
        self.batch: bool | None = None  # unknown until the verifier first answers {"verify": ...}

    async def propose(self, frame: Frame) -> Detections:
        """The frame's bytes as they came from the camera, not re-encoded."""
        image = (ViamImage(frame.data, CameraMimeType.from_string(frame.mime_type or "image/jpeg")) if frame.data
                 else ViamImage(images.encode(frame.image), CameraMimeType.JPEG))
        found = await _remote(self.detector.get_detections(image, extra={"query": self.query}))
        return detections_from_viam(found, width=frame.image.width, height=frame.image.height)

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        if self.batch is not False and (verdicts := await self._verify_batch(crops, questions)) is not None:
            return verdicts
        encoded = await asyncio.to_thread(lambda: [images.encode(crop) for crop in crops])
        limit = asyncio.Semaphore(self.config.max_concurrency)

        async def one(data: bytes, question: str) -> Verdict:
            async with limit:
                found = await _remote(self.verifier.get_classifications(
                    ViamImage(data, CameraMimeType.JPEG), 1, extra={"question": question}))
            return _verdict(found[0].class_name, found[0].confidence) if found else Verdict("unsure", 0.0)

        tasks = [asyncio.ensure_future(one(data, q)) for data, q in zip(encoded, questions)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # one failure settles the frame; the others' answers would be thrown away
                task.cancel()

    async def _verify_batch(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict] | None:
        """The verifier's batch command, or None (and never again) when it does not offer one: it answers
        UNIMPLEMENTED, UNKNOWN (an SDK stub's NotImplementedError), or a reply without 'verdicts'."""
        command = await asyncio.to_thread(verify_command, crops, questions)
        try:
            reply = await self.verifier.do_command(command)
        except GRPCError as exc:
            if self.batch or exc.status not in (Status.UNIMPLEMENTED, Status.UNKNOWN):
                raise _backend_error(exc) from exc
            reply = {}
        verdicts = reply.get("verdicts")
        if not isinstance(verdicts, list):
            if self.batch:
                raise BackendUnavailable(f"the batch reply has no 'verdicts' list: {sorted(reply)}")
            log.info("%s offers no {'verify': ...} command; verifying crop by crop", self.config.verifier)
            self.batch = False
            return None
        self.batch = True
        return [_verdict(v.get("answer"), v.get("confidence")) if isinstance(v, Mapping) else Verdict("unsure", 0.0)
                for v in verdicts]


@labelsieve_resource(SUPPORTED)
class AutoLabelFilterService(Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:autolabel-filter"
    config: FilterConfig
    filter: AutoLabelFilter
    camera: Camera | None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = FilterConfig.parse(config.name, attributes_of(config))
        return requires(parsed.detector, parsed.verifier, parsed.camera_name)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.config = parsed = FilterConfig.parse(config.name, attributes_of(config))
        self.camera = camera_dependency(dependencies, parsed.camera_name)
        stages = VisionStages(parsed, dependencies[Vision.get_resource_name(parsed.detector)],  # type: ignore[arg-type]
                              dependencies[Vision.get_resource_name(parsed.verifier)])  # type: ignore[arg-type]
        self.filter = AutoLabelFilter(parsed, stages.propose, stages.verify, proposer_name=parsed.detector,
                                      verifier_name=parsed.verifier)
        return self

    async def _examine(self, image: ViamImage, gate: bool) -> tuple[list[Detection], list[dict[str, Any]]]:
        decoded = await asyncio.to_thread(images.decode, image.data, where=f"{self.name}: the image")
        decision = await self.filter.examine(Frame(decoded, image.data, image.mime_type), gate=gate)
        return detections_to_viam(decision.detections, *decoded.size), [p.as_dict() for p in decision.provenance]

    async def _camera_frame(self, camera_name: str) -> ViamImage:
        return await camera_frame(self.name, self.camera, self.config.camera_name, camera_name)

    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        """An image sent on purpose is always examined: the near-duplicate gate watches the camera only."""
        detections, _ = await self._examine(image, gate=False)
        return detections

    async def get_detections_from_camera(self, camera_name: str, *, extra: Mapping[str, Any] | None = None,
                                         timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        detections, _ = await self._examine(await self._camera_frame(camera_name), gate=True)
        return detections

    async def capture_all_from_camera(self, camera_name: str, return_image: bool = False,
                                      return_classifications: bool = False, return_detections: bool = False,
                                      return_object_point_clouds: bool = False, return_detections_3d: bool = False, *,
                                      extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                                      **kwargs: Any) -> CaptureAllResult:
        """Only verified boxes, each with its provenance in `extra["provenance"]` (same order)."""
        image = await self._camera_frame(camera_name)
        detections, provenance = await self._examine(image, gate=True)
        if not detections and from_dm_from_extra(dict(extra or {})):
            raise NoCaptureToStoreError()  # viam-server matches its status and message: nothing is stored
        return CaptureAllResult(image=image if return_image else None,
                                classifications=[] if return_classifications else None,
                                detections=detections if return_detections else None,
                                extra={"provenance": provenance} if return_detections else {})

    async def get_properties(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                             **kwargs: Any) -> Vision.Properties:
        return GetPropertiesResponse(classifications_supported=False, detections_supported=True,
                                     object_point_clouds_supported=False)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"stats": {}}` -> the counters since the resource was (re)configured and the last decision with its reasons."""
        command_of(self.name, command, "stats", SUPPORTED)
        last = self.filter.last
        return {"stats": self.filter.stats.as_dict(), "last_decision": last.as_dict() if last else None}


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
