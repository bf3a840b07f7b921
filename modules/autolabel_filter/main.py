"""labelsieve:vision:autolabel-filter: keep a frame only where a detector and a verifier agree (see labelsieve.filter).

The shell adapts the two dependency services (Viam vision clients, any module's) to the filter core's callables:

    propose(frame)            -> detector.get_detections(frame, extra={"query": "<the rules' classes>"})
    verify(crops, questions)  -> verifier.do_command({"verify": {"crops": [...]}}) where the verifier offers it, else
                                 verifier.get_classifications(crop, 1, extra={"question": ...}) per crop, concurrently

For data capture, `capture_all_from_camera(..., extra={"fromDataManagement": true})` raises viam's
NoCaptureToStoreError when nothing was verified, so viam-server (or labelsieve's data manager) stores nothing.

With a `student` (the deployed fast detector), data capture goes through `labelsieve.filter.student.StudentPolicy`: the
student runs on every frame and the teacher (detector + verifier) only where the student is unsure, sees something new,
or on a sampled share; a frame is stored where they disagree (or as a sampled agreement), with the disagreement in
`extra["frame"]`.
"""

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from viam.components.camera import Camera
from viam.errors import NoCaptureToStoreError
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Detection, GetPropertiesResponse
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.services.vision import CaptureAllResult, Vision
from viam.utils import from_dm_from_extra

from labelsieve import images
from labelsieve.capture.format import as_ignore_rows
from labelsieve.filter import AutoLabelFilter, Decision, FilterConfig, Frame
from labelsieve.filter.student import StudentPolicy
from labelsieve.viam.commands import command_of
from labelsieve.viam.convert import attributes_of, camera_frame, detections_to_viam
from labelsieve.viam.resource import camera_dependency, labelsieve_resource, requires
from labelsieve.viam.stages import VisionStages, detect

log = logging.getLogger(__name__)

SUPPORTED = ("get_detections, get_detections_from_camera, capture_all_from_camera (image, verified detections and "
             "extra.provenance), get_properties and do_command {\"stats\": {}}")

@labelsieve_resource(SUPPORTED)
class AutoLabelFilterService(Vision, EasyResource):
    MODEL: ClassVar = "labelsieve:vision:autolabel-filter"
    config: FilterConfig
    filter: AutoLabelFilter
    student: StudentPolicy | None
    camera: Camera | None

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        parsed = FilterConfig.parse(config.name, attributes_of(config))
        return requires(parsed.detector, parsed.verifier, parsed.camera_name, parsed.student)

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        self = super().new(config, dependencies)
        self.config = parsed = FilterConfig.parse(config.name, attributes_of(config))
        self.camera = camera_dependency(dependencies, parsed.camera_name)
        stages = VisionStages(parsed, dependencies[Vision.get_resource_name(parsed.detector)],  # type: ignore[arg-type]
                              dependencies[Vision.get_resource_name(parsed.verifier)])  # type: ignore[arg-type]
        self.filter = AutoLabelFilter(parsed, stages.propose, stages.verify, proposer_name=parsed.detector,
                                      verifier_name=parsed.verifier)
        self.student = None
        if parsed.student:
            student: Vision = dependencies[Vision.get_resource_name(parsed.student)]  # type: ignore[assignment]
            self.student = StudentPolicy(parsed, functools.partial(detect, student), self.filter)
        return self

    async def _frame(self, image: ViamImage) -> Frame:
        decoded = await asyncio.to_thread(images.decode, image.data, where=f"{self.name}: the image")
        return Frame(decoded, image.data, image.mime_type)

    @staticmethod
    def _stored(decision: Decision, width: int, height: int) -> dict[str, Any]:
        """What capture stores beside the verified boxes: each box's provenance and the frame's ignore regions
        (asked-about boxes left unresolved)."""
        return {"provenance": [p or {} for p in decision.detections.provenance],
                "ignore": as_ignore_rows(decision.ignore, width, height)}

    async def _examine(self, image: ViamImage, gate: bool) -> tuple[list[Detection], dict[str, Any]]:
        frame = await self._frame(image)
        decision = await self.filter.examine(frame, gate=gate)
        return detections_to_viam(decision.detections, *frame.image.size), self._stored(decision, *frame.image.size)

    async def _choose(self, image: ViamImage, policy: StudentPolicy, stored: bool
                      ) -> tuple[list[Detection], dict[str, Any]]:
        """The student decides whether the teacher runs; a frame worth storing gets the teacher's labels and the
        disagreement (`extra["frame"]`), any other frame the student's own boxes (and, for data capture, no capture)."""
        frame = await self._frame(image)
        chosen = await policy.examine(frame, gate=True)
        if not chosen.keep or chosen.teacher is None:
            if stored:
                raise NoCaptureToStoreError()
            return detections_to_viam(chosen.student, *frame.image.size), {"frame": {"kept": False}}
        return (detections_to_viam(chosen.detections, *frame.image.size),
                {**self._stored(chosen.teacher, *frame.image.size), "frame": {"kept": True, **chosen.provenance}})

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
        """Only verified boxes, each with its provenance in `extra["provenance"]` (same order), and the frame's ignore
        regions in `extra["ignore"]`; with a student, the frame-level record of why the frame was kept in
        `extra["frame"]`."""
        image = await self._camera_frame(camera_name)
        stored = from_dm_from_extra(dict(extra or {}))
        if self.student is not None:
            detections, more = await self._choose(image, self.student, stored)
        else:
            detections, more = await self._examine(image, gate=True)
            if not detections and stored:
                raise NoCaptureToStoreError()  # viam-server matches its status and message: nothing is stored
        return CaptureAllResult(image=image if return_image else None,
                                classifications=[] if return_classifications else None,
                                detections=detections if return_detections else None,
                                extra=more if return_detections else {})

    async def get_properties(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None,
                             **kwargs: Any) -> Vision.Properties:
        return GetPropertiesResponse(classifications_supported=False, detections_supported=True,
                                     object_point_clouds_supported=False)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        """`{"stats": {}}` -> the counters since the resource was (re)configured and the last decision with its reasons;
        with a student, also its counters (teacher calls saved, disagreements by kind, its precision/recall)."""
        command_of(self.name, command, "stats", SUPPORTED)
        last = self.filter.last
        return {"stats": self.filter.stats.as_dict(), "last_decision": last.as_dict() if last else None,
                **({"student": self.student.stats.as_dict()} if self.student else {})}


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
