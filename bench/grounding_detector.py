"""Time the grounding detector on the released architectures (random weights: cost does not depend on them).

Per model, on 640x480 frames: `transformers.pipeline("zero-shot-object-detection")` (how autodistill and the community
modules call it) vs `GroundingDetector` in process vs the module through `labelsieve run` at the same input size, then the input size (480 vs 800 px, Grounding DINO), batching, text-feature reuse and `quantize: int8`.

    python bench/grounding_detector.py --quick            # 2 timed frames per leg, CPU
    python bench/grounding_detector.py --device cuda --models grounding-dino,owlv2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the same model builders the tests use, at full size

import numpy as np
from PIL import Image

from labelsieve.demo.tiny_models import build_grounding_dino, build_owlv2
from labelsieve.detect import GroundingDetector, GroundingDetectorConfig
from labelsieve.images import encode

CLASSES = ["person", "dog", "traffic light"]
BUILDERS = {"grounding-dino": build_grounding_dino, "owlv2": build_owlv2}
NATIVE = {"grounding-dino": 800, "owlv2": 960}  # the processors' own sizes, which the pipeline uses


def frames(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(n)]


def per_frame(fn: Callable[[], object], frames_per_call: int, iterations: int) -> float:
    """Median seconds per frame over `iterations` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / frames_per_call)
    return statistics.median(times)


def detector(model: Path, device: str, **attributes: object) -> GroundingDetector:
    det = GroundingDetector(GroundingDetectorConfig.parse("bench", {"model": str(model), "device": device,
                                                                     "classes": CLASSES, **attributes}))
    det.load()
    return det


def row(label: str, seconds: float, baseline: float | None = None, note: str = "") -> None:
    ratio = f"{seconds / baseline:6.2f}x" if baseline else "       "
    print(f"  {label:<44} {seconds * 1000:9.1f} ms/frame  {ratio}  {note}")


def bench_model(name: str, directory: Path, device: str, iterations: int, with_module: bool) -> None:
    import torch
    from transformers import pipeline

    images = frames(4)
    one = images[:1]
    native = NATIVE[name]
    print(f"\n{name} on {device} (random weights, 640x480 frames, classes {CLASSES})")
    pipe = pipeline("zero-shot-object-detection", model=str(directory), device=device,
                    dtype=torch.float16 if device == "cuda" else torch.float32)
    base = per_frame(lambda: pipe(one[0], candidate_labels=CLASSES, threshold=0.3), 1, iterations)
    row(f"transformers pipeline @{native}", base, note="baseline")
    det = detector(directory, device, imgsz=native, batch_size=1)
    ours = per_frame(lambda: det.detect_sync(one), 1, iterations)
    row(f"GroundingDetector @{native}", ours, base, "vs pipeline")
    if with_module:
        via = module_path(directory, {"imgsz": native, "batch_size": 1, "device": device}, one[0], iterations)
        row(f"module via labelsieve run @{native}", via, ours, "vs GroundingDetector in process")
        row("", via, base, "vs pipeline")

    if name == "grounding-dino":
        small = detector(directory, device, imgsz=480, batch_size=1)
        row("GroundingDetector @480 (default)", per_frame(lambda: small.detect_sync(one), 1, iterations), ours,
            f"vs @{native}")
        det = small
    batched = detector(directory, device, imgsz=det.config.imgsz, batch_size=4)
    single = per_frame(lambda: det.detect_sync(images), 4, max(1, iterations // 2))
    row(f"4 frames, batch_size 1 @{det.config.imgsz}", single)
    row(f"4 frames, batch_size 4 @{det.config.imgsz}", per_frame(lambda: batched.detect_sync(images), 4,
                                                                     max(1, iterations // 2)), single, "vs batch 1")

    def fresh_text() -> object:
        det.slot.get_sync()._text.clear()  # forget the cached tokens / embeddings: what every call would pay without reuse
        return det.detect_sync(one)

    cached = per_frame(lambda: det.detect_sync(one), 1, iterations)
    row("repeated query, text reused", cached)
    row("repeated query, text re-encoded", per_frame(fresh_text, 1, iterations), cached, "vs reused")

    if device == "cpu":
        int8 = detector(directory, device, imgsz=det.config.imgsz, batch_size=1, quantize="int8")
        row(f"quantize int8 @{det.config.imgsz} (accuracy unverified)",
            per_frame(lambda: int8.detect_sync(one), 1, iterations), cached, "vs float32")


def module_path(directory: Path, attributes: dict[str, object], image: Image.Image, iterations: int) -> float:
    """Median seconds per `get_detections` of `image` from an SDK client, through `labelsieve run` and the module process."""
    import asyncio

    from support import Machine, connect, module
    from viam.media.video import CameraMimeType, ViamImage
    from viam.services.vision import VisionClient

    jpeg = ViamImage(encode(image, quality=95), CameraMimeType.JPEG)
    config = {
        "modules": [module("grounding-detector")],
        "services": [{"name": "det", "api": "rdk:service:vision", "model": "labelsieve:vision:grounding-detector",
                      "attributes": {"model": str(directory), "classes": CLASSES, **attributes}}],
    }

    async def timed(address: str) -> float:
        robot = await connect(address)
        try:
            vision = VisionClient.from_robot(robot, "det")
            await vision.get_detections(jpeg, timeout=600)  # waits for the weights, then warms up
            times = []
            for _ in range(iterations):
                start = time.perf_counter()
                await vision.get_detections(jpeg, timeout=600)
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        finally:
            await robot.close()

    with Machine(config, directory.parent, args=("--no-watch", "--log-level", "warning")) as machine:
        return asyncio.run(timed(machine.address))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 timed iterations per leg instead of 5")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", default="grounding-dino,owlv2", help="comma-separated: grounding-dino, owlv2")
    parser.add_argument("--no-module", dest="with_module", action="store_false",
                        help="skip the leg through `labelsieve run` and the module process (needs viam-sdk)")
    args = parser.parse_args()
    iterations = 2 if args.quick else 5
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            directory = BUILDERS[name](Path(tmp) / name, full_size=True)
            bench_model(name, directory, args.device, iterations, args.with_module)


if __name__ == "__main__":
    main()
