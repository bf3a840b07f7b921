"""Run a filter's two stages over the truth images through the runtime, recording every answer for `metrics`.

The machine config runs as it would on a robot (in-process `Runtime`), so any module can serve as a stage. The filter's
detector and verifier are reached through the SDK's vision clients and adapted exactly as the filter module adapts them
(`labelsieve.viam.stages.VisionStages`), and each frame's decision is `AutoLabelFilter`'s own.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm
from viam.services.vision import VisionClient

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import InputError
from labelsieve.eval.metrics import FrameRecord, Proposal
from labelsieve.eval.truth import Truth
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.runtime import Runtime, RuntimeOptions
from labelsieve.verify import Verdict
from labelsieve.viam.stages import VisionStages

__all__ = ["filter_config", "record_frames"]

def filter_config(config_path: Path, name: str) -> FilterConfig:
    """The named filter resource's attributes, parsed and checked as the module does."""
    raw = json.loads(Path(config_path).read_text())
    found = [s for s in raw.get("services", []) if s.get("name") == name]
    if not found:
        names = [s.get("name") for s in raw.get("services", []) if "autolabel-filter" in str(s.get("model"))]
        raise InputError(f"{config_path}: no service named {name!r}; auto-label filters there: {names}")
    return FilterConfig.parse(name, found[0].get("attributes", {}))


async def _frame(path: Path) -> Frame:
    data = await asyncio.to_thread(path.read_bytes)
    image = await asyncio.to_thread(images.decode, data, where=str(path))
    return Frame(image, data, "image/png" if path.suffix.lower() == ".png" else "image/jpeg")


def _answer(verdict: Verdict) -> tuple[str, float]:
    """As the filter reads it: an answer without a finite confidence is no answer."""
    sure = verdict.answer in ("yes", "no") and math.isfinite(verdict.confidence)
    return (verdict.answer if sure else "unsure"), float(verdict.confidence) if sure else 0.0


async def _record(config: FilterConfig, stages: Any, path: Path, truth: Any) -> FrameRecord:
    """One frame through a filter whose stages record what they answered and how long they took (a filter per frame:
    with the gate off it holds no state worth keeping)."""
    frame = await _frame(path)
    seconds = {"propose": 0.0, "verify": 0.0}
    proposed: list[Detections] = []
    verdicts: list[Verdict] = []

    async def propose(f: Frame) -> Detections:
        start = time.perf_counter()
        try:
            proposed.append(await stages.propose(f))
            return proposed[-1]
        finally:
            seconds["propose"] = time.perf_counter() - start

    async def verify(crops: Sequence[Image.Image], questions: Sequence[str]) -> Sequence[Verdict]:
        start = time.perf_counter()
        try:
            answered = await stages.verify(crops, questions)
            verdicts.extend(answered)
            return answered
        finally:
            seconds["verify"] = time.perf_counter() - start

    sieve = AutoLabelFilter(config, propose, verify, proposer_name=config.detector, verifier_name=config.verifier)
    decision = await sieve.examine(frame, gate=False)
    boxes = proposed[0].clip(*frame.image.size) if proposed else Detections.empty()
    asked, _ = sieve._select(boxes)  # the filter's own choice of (box, rule), in the order its verifier saw the crops
    answers = dict(zip(asked, verdicts)) if decision.outcome != "verifier_failed" else {}
    rules = config.rules
    proposals = tuple(
        Proposal(tuple(float(v) for v in xyxy), float(s), r, *(_answer(a) if (a := answers.get((i, r))) else (None, 0.0)))
        for i, (xyxy, s, name) in enumerate(boxes)
        for r, rule in enumerate(rules) if rule.detect.strip().lower() == str(name).strip().lower())
    kept = tuple((tuple(float(v) for v in xyxy), str(label), float(c)) for xyxy, c, label in decision.detections)
    return FrameRecord(path, truth, proposals, kept, decision.outcome,  # type: ignore[arg-type]
                       seconds["propose"], seconds["verify"], len(verdicts))


async def record_frames(config_path: Path, name: str, truth: Truth, data_dir: Path) -> list[FrameRecord]:
    """Start the machine, examine every truth image with the named filter's stages (near-duplicate gate off), stop it."""
    config = filter_config(config_path, name)
    runtime = Runtime(RuntimeOptions(Path(config_path), port=0, data_dir=data_dir, watch_config=False))
    await runtime.start()
    try:
        robot = await runtime.connect()
        try:
            stages = VisionStages(config, VisionClient.from_robot(robot, config.detector),
                                      VisionClient.from_robot(robot, config.verifier))
            return [await _record(config, stages, image.path, image.boxes)
                    for image in tqdm(truth.images, desc=f"eval {name}", unit="frame")]
        finally:
            await robot.close()
    finally:
        await runtime.shutdown()
