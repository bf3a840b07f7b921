"""Oracle stages for `labelsieve label`: frames whose pixels say which boxes they hold and how each must be verified,
and in-process stand-in stages that read them back, so a test knows every label exactly.

A frame is `WIDTH x HEIGHT`, a dark background split into four slots; a slot holds at most one box, a solid colour:
red (verified "yes"), blue ("no"), green ("unsure"). The proposer finds each slot's bright pixels (score 0.9 - 0.1 x slot,
class "person"); the verifier answers from the bright pixels of its crop. Both sleep `delay` seconds (per frame, per
call) to stand in for a model's cost without using a CPU.

`LABELSIEVE_LABEL_STAGES=support.oracle` registers them as models `test:vision:oracle-proposer` and
`test:vision:oracle-verifier` (with `tests/` on `PYTHONPATH`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.struct_pb2 import Value
from PIL import Image, ImageDraw

from labelsieve.capture.format import decode_provenance, read_capture
from labelsieve.detections import Detections
from labelsieve.filter import FilterConfig, Frame
from labelsieve.label.stages import PROPOSERS, STUDENTS, VERIFIERS
from labelsieve.runtime.config import ResourceConfig
from labelsieve.verify import Verdict

WIDTH, HEIGHT, SLOTS = 320, 120, 4
COLOURS = {"yes": (230, 30, 30), "no": (30, 30, 230), "unsure": (30, 230, 30)}
BRIGHT = 100


def oracle_frame(boxes: Sequence[str | None], background: int = 10) -> Image.Image:
    """`boxes[s]` is the answer slot s's box must get ("yes", "no", "unsure") or None for an empty slot."""
    image = Image.new("RGB", (WIDTH, HEIGHT), (background,) * 3)
    draw = ImageDraw.Draw(image)
    slot = WIDTH // SLOTS
    for s, answer in enumerate(boxes):
        if answer is not None:
            draw.rectangle((s * slot + 12, 15 + 5 * s, s * slot + 66, 95 + 5 * s), fill=COLOURS[answer])
    return image


def scene(count: int, seed: int = 0) -> list[list[str | None]]:
    """`count` distinct frames' box layouts, 0 to 4 boxes each (every frame differs from the one before)."""
    rng = np.random.default_rng(seed)
    choices: list[str | None] = ["yes", "no", "unsure", None]
    layouts: list[list[str | None]] = []
    while len(layouts) < count:
        layout = [choices[int(c)] for c in rng.integers(0, 4, SLOTS)]
        if not layouts or layout != layouts[-1]:
            layouts.append(layout)
    return layouts


def expected(layout: Sequence[str | None], negative: str | None = None) -> list[str]:
    """The labels the filter keeps for a frame (rule: person -> "glasses", negative label `negative`)."""
    names = {"yes": "glasses", "no": negative}
    return [label for answer in layout if answer and (label := names.get(answer))]


def write_frames(folder: Path, layouts: Sequence[Sequence[str | None]], *, background: int = 10) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, layout in enumerate(layouts):
        path = folder / f"{i:04d}.png"
        oracle_frame(layout, background + i % 7).save(path)
        paths.append(path)
    return paths


def outputs(out: Path) -> dict[str, dict[str, Any]]:
    """Each labeled file by the frame it came from: its labels, boxes, provenance and header."""
    found = {}
    for path in sorted(out.rglob("*.capture")):
        capture = read_capture(path)
        packed = Value()
        capture.header.method_parameters["source"].Unpack(packed)
        origin = json.loads(packed.string_value)
        (reading,) = capture.readings
        boxes = reading.metadata.annotations.bboxes
        key = f"{origin['file']}#{int(origin['reading'])}" if "reading" in origin else \
            f"{origin['file']}@{int(origin['frame'])}" if "frame" in origin else origin["file"]
        found[key] = {"labels": [b.label for b in boxes], "provenance": [decode_provenance(b.id) for b in boxes],
                      "header": capture.header, "path": path, "reading": reading, "origin": origin}
    return found


def _bright(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return pixels.max(axis=-1) > BRIGHT


class OracleProposer:
    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        self.delay, self.batch_size = float(resource.attributes.get("delay", 0.0)), int(resource.attributes.get("batch", 1))

    async def propose(self, frames: Sequence[Frame]) -> list[Detections]:
        await asyncio.sleep(self.delay * len(frames))
        return [self._boxes(np.asarray(f.image)) for f in frames]

    @staticmethod
    def _boxes(pixels: np.ndarray[Any, Any]) -> Detections:
        rows, slot = [], pixels.shape[1] // SLOTS
        for s in range(SLOTS):
            ys, xs = np.nonzero(_bright(pixels[:, s * slot : (s + 1) * slot]))
            if len(xs):
                rows.append(([s * slot + xs.min(), ys.min(), s * slot + xs.max() + 1, ys.max() + 1], 0.9 - 0.1 * s))
        return Detections(np.array([r[0] for r in rows], np.float32).reshape(-1, 4), [r[1] for r in rows],
                          ["person"] * len(rows))

    async def close(self) -> None:
        return None


class OracleVerifier:
    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        self.delay = float(resource.attributes.get("delay", 0.0))

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        await asyncio.sleep(self.delay)  # one call for the frame's crops, as a batch verifier
        return [self._answer(np.asarray(c.convert("RGB"))) for c in crops]

    @staticmethod
    def _answer(pixels: np.ndarray[Any, Any]) -> Verdict:
        bright = pixels[_bright(pixels)]
        if not len(bright):
            return Verdict("unsure", 0.9)
        red, green, blue = bright.mean(axis=0)
        answer = "yes" if red > max(green, blue) else "no" if blue > max(red, green) else "unsure"
        return Verdict(answer, 0.9)  # type: ignore[arg-type]

    async def close(self) -> None:
        return None


class OracleStudent:
    """A deployed detector of known errors: "glasses" at every red box at 0.95, except that it misses the red box in
    slot `miss` and, with `extra`, also calls each blue box "glasses" at 0.5 (inside the default unsure band)."""

    def __init__(self, resource: ResourceConfig, config: FilterConfig, base: Path) -> None:
        self.miss, self.extra = resource.attributes.get("miss"), bool(resource.attributes.get("extra"))

    async def detect(self, frame: Frame) -> Detections:
        pixels = np.asarray(frame.image.convert("RGB"))
        found = OracleProposer._boxes(pixels)
        rows = []
        for xyxy in found.xyxy:
            x0, y0, x1, y1 = (int(v) for v in xyxy)
            answer = OracleVerifier._answer(pixels[y0:y1, x0:x1]).answer
            if answer == "yes" and x0 // (WIDTH // SLOTS) != self.miss:
                rows.append((xyxy, 0.95))
            elif answer == "no" and self.extra:
                rows.append((xyxy, 0.5))
        return Detections(np.array([r[0] for r in rows], np.float32).reshape(-1, 4), [r[1] for r in rows],
                          ["glasses"] * len(rows))

    async def close(self) -> None:
        return None


PROPOSERS["test:vision:oracle-proposer"] = OracleProposer
STUDENTS["test:vision:oracle-student"] = OracleStudent
VERIFIERS["test:vision:oracle-verifier"] = OracleVerifier


def oracle_config(path: Path, *, delay_propose: float = 0.0, delay_verify: float = 0.0, negative: str | None = None,
                  duplicate_threshold: float = 0.01, batch: int = 1, extra_services: Sequence[dict[str, Any]] = (),
                  modules: Sequence[dict[str, Any]] = (), detector: str = "det", verifier: str = "ver") -> Path:
    """A machine config with the filter `labeler` over the oracle stages (or `detector` / `verifier` given instead)."""
    rule: dict[str, Any] = {"detect": "person", "question": "Glasses?", "label": "glasses"}
    if negative:
        rule["negative_label"] = negative
    services = [
        {"name": "labeler", "api": "rdk:service:vision", "model": "labelsieve:vision:autolabel-filter",
         "attributes": {"detector": detector, "verifier": verifier, "rules": [rule],
                        "duplicate_threshold": duplicate_threshold}},
        {"name": "det", "api": "rdk:service:vision", "model": "test:vision:oracle-proposer",
         "attributes": {"delay": delay_propose, "batch": batch}},
        {"name": "ver", "api": "rdk:service:vision", "model": "test:vision:oracle-verifier",
         "attributes": {"delay": delay_verify}},
        *extra_services,
    ]
    path.write_text(json.dumps({"services": services, "modules": list(modules)}))
    return path


def module_stages_config(root: Path) -> tuple[Path, Path]:
    """Three JPEG frames (a red, a blue and a green box) and a config whose filter's stages are module processes
    (tests/modules/filter_stages: the scripted proposer and the colour verifier). Expected: glasses, no_glasses, none."""
    from support.machine import TEST_MODULES, module

    frames = root / "frames"
    frames.mkdir()
    boxes = {}
    for i, colour in enumerate(["red", "blue", "green"]):
        image = oracle_frame([None] * SLOTS, 10 + 20 * i)
        image.paste(colour, (100, 20, 200, 100))
        image.save(frames / f"{i}.jpg", quality=95)
        boxes[f"{i}.jpg"] = [[100, 20, 200, 100, 0.8, "person"]]
    (root / "boxes.json").write_text(json.dumps(boxes))
    stages = [{"name": "proposer", "api": "rdk:service:vision", "model": "test:vision:scripted-proposer",
               "attributes": {"frames": str(frames), "boxes": str(root / "boxes.json")}},
              {"name": "vlm", "api": "rdk:service:vision", "model": "test:vision:colour-verifier",
               "attributes": {"batch": "verify"}}]
    config = oracle_config(root / "machine.json", negative="no_glasses", detector="proposer", verifier="vlm",
                           extra_services=stages, modules=[module("filter-stages", TEST_MODULES / "filter_stages")])
    return frames, config
