"""A filter's two stages for a backlog job, read from the machine config as the live filter reads them.

labelsieve's own grounding detector and VLM verifier run in this process, built from their attributes through the same
classes their modules use; a stage served by any other module runs through the embedded runtime and is called through
the SDK exactly as the filter module calls it (`labelsieve.viam.stages.VisionStages`). The in-process stages hand the
filter what the Viam hop would: proposals rounded to whole pixels (`detections_to_viam`) and crops through the same
JPEG encoding, so a frame's decision is the live filter's.

`StageSpec` is the picklable recipe: the local job builds its stages from it once, each Ray actor builds its own.
Test stand-ins register more in-process models through `LABELSIEVE_LABEL_STAGES` (a module imported first).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import InputError
from labelsieve.filter import FilterConfig, Frame
from labelsieve.runtime.config import MachineConfig, ResourceConfig, load_config
from labelsieve.verify import Verdict

__all__ = ["PROPOSERS", "STUDENTS", "VERIFIERS", "LocalProposer", "LocalVerifier", "StageSpec", "Stages", "Student",
           "open_stage", "open_stages", "open_student", "start_runtime"]

GROUNDING, VLM = "labelsieve:vision:grounding-detector", "labelsieve:vision:vlm-verifier"
FAST = "labelsieve:vision:fast-detector"
#: The filter's `student` (active learning), as `StudentPolicy` calls it.
Student = Callable[[Frame], Awaitable[Detections]]
HOOK = "LABELSIEVE_LABEL_STAGES"


class LocalProposer(Protocol):
    #: Frames per call that pay (the detector's own batch size); the job hands it up to this many at once.
    batch_size: int

    async def propose(self, frames: Sequence[Frame]) -> list[Detections]: ...

    async def close(self) -> None: ...


class LocalVerifier(Protocol):
    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]: ...

    async def close(self) -> None: ...


Factory = Callable[[ResourceConfig, FilterConfig, Path], Any]


def _query(config: FilterConfig) -> str:
    return " ".join(f"{c}." for c in config.detect_classes)  # as VisionStages asks a detector module


def _as_served(found: Detections, frame: Frame) -> Detections:
    """What the filter gets back through Viam: whole-pixel boxes (`detections_to_viam` rounds them)."""
    from labelsieve.viam.convert import detections_from_viam, detections_to_viam

    width, height = frame.image.size
    return detections_from_viam(detections_to_viam(found, width, height), width=width, height=height)


def _local_attributes(resource: ResourceConfig, base: Path) -> dict[str, Any]:
    """A relative `model` path resolved against the config's folder, as the runtime does for its modules."""
    attributes = dict(resource.attributes)
    for key in ("model", "model_path"):
        model = attributes.get(key)
        if isinstance(model, str) and not Path(model).expanduser().is_absolute() and (base / model).exists():
            attributes[key] = str(base / model)
    return attributes


class _Grounding:
    """Half precision comes from the detector's own `dtype` ("auto": float16 on a GPU) and the batch from its
    `batch_size` (unset: 4 frames a forward on a GPU, 1 on a CPU, where batching measured slower)."""

    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        from labelsieve.detect import GroundingDetector, GroundingDetectorConfig
        from labelsieve.models import resolve_device

        parsed = GroundingDetectorConfig.parse(resource.name, _local_attributes(resource, base))
        self.detector, self.query = GroundingDetector(parsed, resource.name), _query(config)
        on_gpu = resolve_device(parsed.device, resource.name, cpu_only=parsed.quantize == "int8") == "cuda"
        self.batch_size = parsed.batch_size or (4 if on_gpu else 1)
        self.detector.start()

    async def propose(self, frames: Sequence[Frame]) -> list[Detections]:
        found = await self.detector.detect([f.image for f in frames], self.query)
        return [_as_served(d, f) for d, f in zip(found, frames, strict=True)]

    async def close(self) -> None:
        await self.detector.close()


class _Vlm:
    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        from labelsieve.verify import Verifier, VerifierConfig

        self.verifier = Verifier(VerifierConfig.parse(resource.name, _local_attributes(resource, base)), resource.name)
        self.verifier.start()

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]:
        sent = await asyncio.to_thread(lambda: [images.decode(images.encode(c)) for c in crops])  # as the module sees them
        return await self.verifier.verify(sent, questions)

    async def close(self) -> None:
        await self.verifier.close()


class _Fast:
    """labelsieve's fast detector, built from its attributes as its module builds it; the model file is loaded once
    (a fleet URL or a model that changes during the job needs the module: the runtime serves any other student)."""

    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        from labelsieve.detect.fast import FastDetectorConfig, load_model

        self.config = FastDetectorConfig.parse(resource.name, _local_attributes(resource, base))
        self.model = load_model(Path(self.config.model_path).expanduser(), self.config.device)

    async def detect(self, frame: Frame) -> Detections:
        c = self.config
        found = await asyncio.to_thread(self.model.detect, frame.image, c.confidence, c.iou, c.max_detections)
        return _as_served(found, frame)

    async def close(self) -> None:
        return None


PROPOSERS: dict[str, Factory] = {GROUNDING: _Grounding}
VERIFIERS: dict[str, Factory] = {VLM: _Vlm}
#: In-process students: a factory's object has `async detect(frame) -> Detections` and `async close()`.
STUDENTS: dict[str, Factory] = {FAST: _Fast}


@dataclass(frozen=True)
class StageSpec:
    config_path: Path
    filter: str
    #: A runtime serving the stages that do not run in process ("" until the job starts one).
    address: str = ""

    def machine(self) -> MachineConfig:
        return load_config(self.config_path)

    def filter_config(self) -> FilterConfig:
        machine = self.machine()
        found = [r for r in machine.resources if r.name == self.filter]
        if not found:
            filters = [r.name for r in machine.resources if "autolabel-filter" in r.model]
            raise InputError(f"{self.config_path}: no service named {self.filter!r}; auto-label filters there: {filters}")
        return FilterConfig.parse(self.filter, found[0].attributes)

    def fingerprint(self) -> str:
        """The filter's settings and its stages' attributes: outputs made under others must not be mixed."""
        machine, config = self.machine(), self.filter_config()
        parts = {name: (r.model, dict(r.attributes)) for r in machine.resources
                 for name in (self.filter, config.detector, config.verifier, config.student) if r.name == name}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def remote(self) -> list[str]:
        """The stages no in-process class serves: they need the runtime."""
        _load_hook()
        machine, config = self.machine(), self.filter_config()
        models = {r.name: r.model for r in machine.resources}
        roles = ((config.detector, PROPOSERS), (config.verifier, VERIFIERS), (config.student, STUDENTS))
        return [name for name, known in roles if name is not None and models.get(name) not in known]


@dataclass
class Stages:
    config: FilterConfig
    proposer: LocalProposer
    verifier: LocalVerifier


def _load_hook() -> None:
    if hook := os.environ.get(HOOK):
        importlib.import_module(hook)


class _Remote:
    """The stages behind the runtime, through the SDK as the filter module calls them."""

    def __init__(self, stages: Any, concurrency: int) -> None:
        self.stages, self.batch_size = stages, concurrency

    async def propose(self, frames: Sequence[Frame]) -> list[Detections]:
        return list(await asyncio.gather(*(self.stages.propose(f) for f in frames)))

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]:
        return await self.stages.verify(crops, questions)  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None


async def open_stages(spec: StageSpec, exits: AsyncExitStack) -> Stages:
    """Both stages; `exits` closes them (and the runtime connection)."""
    return Stages(spec.filter_config(), await open_stage(spec, "proposer", exits), await open_stage(spec, "verifier", exits))


async def open_stage(spec: StageSpec, role: Literal["proposer", "verifier"], exits: AsyncExitStack) -> Any:
    """One stage (a `LocalProposer` or `LocalVerifier`): a Ray actor builds only its own, so a GPU holds one model."""
    _load_hook()
    machine, config = spec.machine(), spec.filter_config()
    name, known = (config.detector, PROPOSERS) if role == "proposer" else (config.verifier, VERIFIERS)
    resource = next((r for r in machine.resources if r.name == name), None)
    if resource is None:
        raise InputError(f"{spec.config_path}: the filter {spec.filter!r} names {name!r}, which is not in the config")
    factory = known.get(resource.model)
    if factory is None:
        return await _connect(spec, config, exits)
    stage = factory(resource, config, spec.config_path.resolve().parent)
    exits.push_async_callback(stage.close)
    return stage


async def open_student(spec: StageSpec, exits: AsyncExitStack) -> Student | None:
    """The filter's student (None without one): in process when a `STUDENTS` class serves its model, else through the
    runtime as the filter module calls it."""
    _load_hook()
    machine, config = spec.machine(), spec.filter_config()
    if config.student is None:
        return None
    resource = next((r for r in machine.resources if r.name == config.student), None)
    if resource is None:
        raise InputError(f"{spec.config_path}: the filter {spec.filter!r} names the student {config.student!r}, which "
                         f"is not in the config")
    factory = STUDENTS.get(resource.model)
    if factory is None:
        from viam.services.vision import VisionClient

        from labelsieve.viam.stages import detect

        robot = await _robot(spec, exits)
        return functools.partial(detect, VisionClient.from_robot(robot, config.student))
    stage = factory(resource, config, spec.config_path.resolve().parent)
    exits.push_async_callback(stage.close)
    return stage.detect  # type: ignore[no-any-return]


async def _robot(spec: StageSpec, exits: AsyncExitStack) -> Any:
    from viam.robot.client import RobotClient
    from viam.rpc.dial import DialOptions

    if not spec.address:
        raise InputError(f"{spec.filter}: stages {spec.remote()} need the runtime, and none was started")
    options = RobotClient.Options(dial_options=DialOptions(insecure=True, disable_webrtc=True), disable_sessions=True)
    robot = await RobotClient.at_address(spec.address, options)
    exits.push_async_callback(robot.close)
    return robot


async def _connect(spec: StageSpec, config: FilterConfig, exits: AsyncExitStack) -> _Remote:
    from viam.services.vision import VisionClient

    from labelsieve.viam.stages import VisionStages

    robot = await _robot(spec, exits)
    stages = VisionStages(config, VisionClient.from_robot(robot, config.detector),
                          VisionClient.from_robot(robot, config.verifier))
    return _Remote(stages, config.max_concurrency)


def _stage_config(spec: StageSpec) -> dict[str, Any]:
    """The machine config cut down to the stages that need the runtime, what they depend on, and the modules: nothing
    else starts (no filter, no camera, no capture)."""
    raw = json.loads(spec.config_path.read_text())
    wanted, by_name = set(spec.remote()), {r.name: r for r in spec.machine().resources}
    todo = list(wanted)
    while todo:
        for dep in by_name[todo.pop()].depends_on:
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    cut = {section: [{k: v for k, v in r.items() if k != "service_configs"} for r in raw.get(section, [])
                     if r.get("name") in wanted] for section in ("components", "services")}
    return {**{k: v for k, v in raw.items() if k not in cut}, **cut}


async def start_runtime(spec: StageSpec, data_dir: Path, exits: AsyncExitStack) -> StageSpec:
    """The stages that need it running in the embedded runtime (as `eval` runs them); the spec with its address.

    The cut-down config is written beside the original (and removed after), so relative paths in it mean the same."""
    if not spec.remote():
        return spec
    from labelsieve.runtime import Runtime, RuntimeOptions

    path = spec.config_path.resolve()
    cut = path.with_name(f".{path.stem}.label-{os.getpid()}.json")
    cut.write_text(json.dumps(_stage_config(spec)))
    exits.callback(cut.unlink, missing_ok=True)
    runtime = Runtime(RuntimeOptions(cut, port=0, data_dir=data_dir, watch_config=False))
    await runtime.start()
    exits.push_async_callback(runtime.shutdown)
    return StageSpec(spec.config_path, spec.filter, runtime.address)
