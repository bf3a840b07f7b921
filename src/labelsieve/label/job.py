"""What every way of running a backlog job shares: the per-stream gate, one frame's decision, and the output file.

The gate decides from pixels alone, in each stream's time order, before any model runs: a frame is a near-duplicate of the
last frame that passed the gate (the live filter's `DuplicateGate`, same measure and threshold). Unlike the live filter,
a frame whose stage then fails still is the reference (a backlog job cannot wait for the verdict before gating the next
frame without giving up its pipeline); the failed frame itself is redone by the next run, gated as before.

A frame's decision is `AutoLabelFilter.examine` over the stages' answers, gate off: the live filter's logic exactly.
A kept frame becomes one `.capture` file as the live filter and the data manager write it (CaptureAllFromCamera, the
verified boxes, each box's provenance in its id, the same folder layout), named after the frame's capture time and key,
written atomically: a redone frame rewrites the same bytes. Its origin rides in the header's `method_parameters.source`
(JSON text: a struct's map would not serialize to the same bytes twice).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import numpy as np
import numpy.typing as npt
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from labelsieve import images
from labelsieve.capture.format import CAPTURE_SUFFIX, PROGRESS_SUFFIX, as_annotations, capture_dir_for, write_capture
from labelsieve.capture.manager import VISION, CaptureMethod, DataManagerConfig, Reading
from labelsieve.detections import Detections
from labelsieve.errors import LabelsieveError
from labelsieve.filter import AutoLabelFilter, Decision, DuplicateGate, FilterConfig, Frame, VerifyCrops, thumbnail
from labelsieve.label.ledger import Record
from labelsieve.label.sources import SourceFrame, Stream, Unreadable
from labelsieve.label.stages import LocalProposer, StageSpec
from labelsieve.verify import Verdict

__all__ = ["Done", "Output", "Pending", "decoded", "examine", "gated", "label_frame", "output_for", "propose"]

METHOD = "CaptureAllFromCamera"


@dataclass(frozen=True)
class Pending:
    """A frame that passed the gate, on its way to the stages."""

    frame: SourceFrame
    reference: bytes  # its gate thumbnail, recorded so a resumed run gates the stream the same way
    read_s: float


@dataclass(frozen=True)
class Done:
    """A frame a previous run finished: skipped, counted by the progress bar."""

    key: str


def _stored(thumb: npt.NDArray[np.float32]) -> bytes:
    return np.round(thumb * 255).astype(np.uint8).tobytes()  # exact: the thumbnail is uint8 / 255


def _restored(reference: bytes) -> npt.NDArray[np.float32]:
    side = math.isqrt(len(reference))
    return np.frombuffer(reference, np.uint8).reshape(side, side).astype(np.float32) / 255.0


def gated(stream: Stream, finished: Mapping[str, bytes | None], threshold: float) -> Iterator[Pending | Record | Done]:
    """The stream's frames in order through the gate: frames for the stages, records for duplicates and unreadable
    frames, and `Done` for frames finished before (their references restored from the ledger, not re-decoded)."""
    gate = DuplicateGate(threshold)
    for item in stream.frames():
        if item.key in finished:
            if (reference := finished[item.key]) is not None:
                gate.examined(_restored(reference))
            yield Done(item.key)
            continue
        if isinstance(item, Unreadable):
            yield Record(item.key, item.stream, "unreadable", reason=item.reason)
            continue
        start = time.perf_counter()
        try:
            thumb = thumbnail(images.decode(item.data, where=item.key))
        except LabelsieveError as exc:
            yield Record(item.key, item.stream, "unreadable", reason=str(exc))
            continue
        difference = gate.difference(thumb)
        seconds = {"read": time.perf_counter() - start}
        if gate.is_duplicate(difference):
            yield Record(item.key, item.stream, "duplicate", seconds=seconds,
                         reason=f"differs from the last frame examined by {difference:.4f}, under duplicate_threshold "
                                f"{threshold}")
            continue
        gate.examined(thumb)
        yield Pending(item, _stored(thumb), seconds["read"])


def decoded(frames: Sequence[Pending]) -> list[Frame]:
    """Blocking. The gate decoded each frame once already, so they decode."""
    return [Frame(images.decode(p.frame.data, where=p.frame.key), p.frame.data, p.frame.mime_type) for p in frames]


async def propose(proposer: LocalProposer, frames: Sequence[Frame], timeout: float) -> tuple[list[Detections | BaseException], float]:
    """One proposer call for the frames, bounded by the filter's detector timeout per frame, and its seconds per frame.
    A failure is each frame's: the filter reports it as `detector_failed`, and the next run redoes them."""
    start = time.perf_counter()
    try:
        found: list[Detections | BaseException] = list(await asyncio.wait_for(proposer.propose(frames),
                                                                               timeout * len(frames)))
        if len(found) != len(frames):
            raise ValueError(f"the proposer answered {len(found)} results for {len(frames)} frames")
    except Exception as exc:  # noqa: BLE001 - a failing stage fails its frames, never the job
        found = [exc] * len(frames)
    return found, (time.perf_counter() - start) / len(frames)


async def examine(config: FilterConfig, frame: Frame, proposals: Detections | BaseException, verify: VerifyCrops,
                  seconds: dict[str, float]) -> Decision:
    """The live filter's decision on a frame whose proposals were computed beforehand (in a batch): its detector
    failure, timeout included, is the filter's own `detector_failed`. Verification time is added to `seconds`."""

    async def propose(_: Frame) -> Detections:
        if isinstance(proposals, BaseException):
            raise proposals
        return proposals

    async def timed(crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]:
        start = time.perf_counter()
        try:
            return await verify(crops, questions)
        finally:
            seconds["verify"] = seconds.get("verify", 0.0) + time.perf_counter() - start

    sieve = AutoLabelFilter(config, propose, timed, proposer_name=config.detector, verifier_name=config.verifier)
    return await sieve.examine(frame, gate=False)


class Output:
    """Kept frames as capture files under `url` (a folder or any fsspec URL), as the data manager lays them out."""

    def __init__(self, url: str, method: CaptureMethod, tags: Sequence[str], staging: Path) -> None:
        self.url, self.method, self.tags, self.staging = url.rstrip("/"), method, tuple(tags), staging
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.folder = str(capture_dir_for(Path(self.root), VISION, method.resource, METHOD))

    def name(self, frame: SourceFrame) -> str:
        """The capture time (viam-server's file name, in UTC so every machine agrees) and the key's digest."""
        when = datetime.fromtimestamp(frame.time, UTC).strftime("%Y-%m-%dT%H_%M_%S.%fZ")
        return f"{when}_{hashlib.sha256(frame.key.encode()).hexdigest()[:16]}"

    def write(self, frame: SourceFrame, image: Image.Image, decision: Decision) -> str:
        """Blocking. Returns where the file is; the same frame always lands at the same place, whole."""
        width, height = image.size
        camera = frame.component.rsplit("/", 1)[-1] or self.method.additional_params.get("camera_name", "")
        method = dataclasses.replace(self.method, additional_params={
            **self.method.additional_params, "camera_name": camera, "source": json.dumps(frame.origin, sort_keys=True)})
        when = datetime.fromtimestamp(frame.time, UTC)
        found = decision.detections
        annotations = as_annotations(found[found.confidence >= self.method.min_confidence_score], width, height)
        reading = Reading(frame.data, frame.mime_type, annotations, when, when).sensor_data()
        header, name = method.header(self.tags, frame.mime_type), self.name(frame)
        if self.local:
            return str(write_capture(Path(self.folder), header, [reading], name=name))
        staged = write_capture(self.staging / hashlib.sha256(self.url.encode()).hexdigest()[:16], header, [reading],
                               name=name)
        final = f"{self.folder}/{name}{CAPTURE_SUFFIX}"
        self.fs.makedirs(self.folder, exist_ok=True)
        self.fs.put_file(str(staged), final + PROGRESS_SUFFIX)  # a reader of the bucket never sees half a file
        self.fs.mv(final + PROGRESS_SUFFIX, final)
        staged.unlink()
        return str(self.fs.unstrip_protocol(final))

    def save_summary(self, text: str) -> str:
        path = f"{self.root}/label-summary.json"
        self.fs.makedirs(self.root, exist_ok=True)
        with self.fs.open(path + ".part", "w") as out:
            out.write(text)
        self.fs.mv(path + ".part", path)
        return path if self.local else str(self.fs.unstrip_protocol(path))


def output_for(spec: StageSpec, url: str, staging: Path) -> Output:
    """The writer the filter's own data-manager settings call for: its CaptureAllFromCamera entry (camera, minimum
    confidence) and the data manager's tags, or plain defaults when the config captures nothing."""
    machine = spec.machine()
    resource = next(r for r in machine.resources if r.name == spec.filter)
    methods = [m for m in CaptureMethod.from_service_configs(resource.name, VISION, resource.service_configs)
               if m.method == METHOD]
    config = spec.filter_config()
    method = methods[0] if methods else CaptureMethod(METHOD, additional_params={"camera_name": config.camera_name or ""},
                                                      api=VISION, resource=spec.filter)
    managers = [DataManagerConfig.parse(r.name, r.attributes) for r in machine.resources
                if r.api == "rdk:service:data_manager"]
    return Output(url, method, managers[0].tags if managers else (), staging)


async def label_frame(config: FilterConfig, output: Output, pending: Pending, frame: Frame,
                      proposals: Detections | BaseException, verify: VerifyCrops, propose_s: float) -> Record:
    """Decide on one frame, write it when kept, and say what became of it (for the ledger)."""
    seconds = {"read": pending.read_s, "propose": propose_s}
    decision = await examine(config, frame, proposals, verify, seconds)
    written = ""
    if decision.kept:
        start = time.perf_counter()
        written = await asyncio.to_thread(output.write, pending.frame, frame.image, decision)
        seconds["write"] = time.perf_counter() - start
    return Record(pending.frame.key, pending.frame.stream, decision.outcome, pending.reference, written,
                  tuple(str(c) for c in decision.detections.class_name),
                  "" if decision.kept else "; ".join(decision.reasons), seconds)
