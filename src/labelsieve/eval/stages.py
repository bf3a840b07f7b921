"""Run a filter's two stages over the truth images through the runtime, recording every answer for `metrics`.

The machine config runs as it would on a robot (in-process `Runtime`), so any module can serve as a stage. The filter's
detector and verifier are reached through the SDK's vision clients and adapted exactly as the filter module adapts them
(`labelsieve.viam.stages.VisionStages`), and each frame's decision is `AutoLabelFilter`'s own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpclib import GRPCError

from PIL import Image
from tqdm import tqdm
from viam.services.vision import Vision, VisionClient

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import InputError
from labelsieve.eval.metrics import FrameRecord
from labelsieve.eval.truth import Truth
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.runtime import Runtime, RuntimeOptions
from labelsieve.runtime.config import load_config
from labelsieve.verify import Verdict
from labelsieve.viam.stages import VisionStages, detect

__all__ = ["filter_config", "record_frames", "runtime_options"]

FILTER_MODEL = "labelsieve:vision:autolabel-filter"


def filter_config(config_path: Path, name: str) -> FilterConfig:
    """The named filter resource's attributes, read as the runtime reads the config (`${environment.X}` expanded),
    parsed and checked as the module does."""
    config = load_config(config_path)
    found = [r for r in config.resources if r.name == name]
    if not found:
        names = [r.name for r in config.resources if r.model == FILTER_MODEL]
        raise InputError(f"{config_path}: no service named {name!r}; auto-label filters there: {names}")
    if found[0].model != FILTER_MODEL:
        raise InputError(f"{config_path}: {name!r} is a {found[0].model}, not an auto-label filter ({FILTER_MODEL})")
    return FilterConfig.parse(name, found[0].attributes)


def runtime_options(config_path: Path, data_dir: Path) -> RuntimeOptions:
    """How eval runs the machine: on its own port, without watching the config. The one place that says what an
    evaluation's runtime may do; evaluating must never write capture files into the training pool."""
    return RuntimeOptions(Path(config_path), port=0, data_dir=data_dir, watch_config=False, capture=False, strict=True)


async def _frame(path: Path) -> Frame:
    data = await asyncio.to_thread(path.read_bytes)
    image = await asyncio.to_thread(images.decode, data, where=str(path))
    return Frame(image, data, "image/png" if path.suffix.lower() == ".png" else "image/jpeg", {"source": str(path)})


async def _record(config: FilterConfig, stages: VisionStages, truth: Detections, student: Vision | None) -> FrameRecord:
    """One frame through a filter whose stages are timed (a filter per frame: with the gate off it holds no state worth
    keeping). What it asked and how each box ended is the decision's own trace."""
    path = Path(truth.metadata["path"])
    frame = await _frame(path)
    seconds = {"propose": 0.0, "verify": 0.0}

    async def propose(f: Frame) -> Detections:
        start = time.perf_counter()
        try:
            return await stages.propose(f)
        finally:
            seconds["propose"] = time.perf_counter() - start

    async def verify(crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]:
        start = time.perf_counter()
        try:
            return await stages.verify(crops, questions)
        finally:
            seconds["verify"] = time.perf_counter() - start

    sieve = AutoLabelFilter(config, propose, verify, proposer_name=config.detector, verifier_name=config.verifier)
    decision = await sieve.examine(frame, gate=False)
    students = (await detect(student, frame)).clip(*frame.image.size) if student is not None else None
    return FrameRecord(path, truth, decision, seconds["propose"], seconds["verify"], students)


async def _identity(student: Vision) -> dict[str, Any]:
    """Which model the student serves, where it says (the fast detector's `status`: its model id and dataset)."""
    try:
        status = dict(await student.do_command({"status": {}}))
    except GRPCError:
        return {}
    return {key: status[key] for key in ("model_id", "dataset", "version") if key in status}


async def record_frames(config_path: Path, name: str, truth: Truth, data_dir: Path
                        ) -> tuple[list[FrameRecord], dict[str, Any] | None]:
    """Start the machine, examine every truth image with the named filter's stages (near-duplicate gate off), and ask
    the filter's student too where it has one; stop it. Returns the records and the student's identity (None: no
    student)."""
    config = filter_config(config_path, name)
    runtime = Runtime(runtime_options(config_path, data_dir))
    await runtime.start()
    try:
        robot = await runtime.connect()
        try:
            stages = VisionStages(config, VisionClient.from_robot(robot, config.detector),
                                  VisionClient.from_robot(robot, config.verifier))
            student = VisionClient.from_robot(robot, config.student) if config.student else None
            records = [await _record(config, stages, image, student)
                       for image in tqdm(truth.images, desc=f"eval {name}", unit="frame")]
            return records, (await _identity(student) if student is not None else None)
        finally:
            await robot.close()  # type: ignore[no-untyped-call]  # untyped in viam-sdk
    finally:
        await runtime.shutdown()
