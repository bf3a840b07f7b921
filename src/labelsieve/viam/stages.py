"""Viam vision services as the auto-label filter's two stages (`labelsieve.filter` takes plain callables):

    propose(frame)            -> detector.get_detections(frame, extra={"query": "<the rules' classes>"})
    verify(crops, questions)  -> verifier.do_command({"verify": {"crops": [...]}}) where the verifier offers it, else
                                 verifier.get_classifications(crop, 1, extra={"question": ...}) per crop, concurrently

The filter module and `labelsieve eval` both use this, so evaluation calls the stages exactly as the filter does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from grpclib import GRPCError, Status
from PIL import Image
from viam.media.video import CameraMimeType, ViamImage
from viam.services.vision import Vision

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import BackendUnavailable
from labelsieve.filter import FilterConfig, Frame
from labelsieve.verify import Verdict
from labelsieve.viam.commands import verify_command
from labelsieve.viam.convert import detections_from_viam

__all__ = ["VisionStages", "detect"]

log = logging.getLogger(__name__)

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
    return Verdict("yes" if answer == "yes" else "no" if answer == "no" else "unsure", score)


async def detect(service: Vision, frame: Frame, extra: Mapping[str, Any] | None = None) -> Detections:
    """A vision service's boxes for the frame, sent as its bytes came from the camera (not re-encoded)."""
    image = (ViamImage(frame.data, CameraMimeType.from_string(frame.mime_type or "image/jpeg")) if frame.data
             else ViamImage(images.encode(frame.image), CameraMimeType.JPEG))
    found = await _remote(service.get_detections(image, extra=extra))
    return detections_from_viam(found, width=frame.image.width, height=frame.image.height)


class VisionStages:
    """The filter core's two stages over Viam vision services."""

    def __init__(self, config: FilterConfig, detector: Vision, verifier: Vision) -> None:
        self.config, self.detector, self.verifier = config, detector, verifier
        self.query = " ".join(f"{c}." for c in config.detect_classes)  # "person. car.", as grounding detectors read it
        self.batch: bool | None = None  # unknown until the verifier first answers {"verify": ...}

    async def propose(self, frame: Frame) -> Detections:
        return await detect(self.detector, frame, {"query": self.query})

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
