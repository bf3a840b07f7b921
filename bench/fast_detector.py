"""Time the fast detector: the module through `labelsieve run` vs ultralytics `predict` in process, on the same frames.

A random-weight yolo11n (compute does not depend on the weights), as `.pt` and as ONNX exported at each size. Prints,
per format and size, frames per second in process and through the module, and their ratio (goals: module >= 0.9 of
in process at 640, >= 0.8 at 320; ONNX >= 2x torch on a CPU); then the module's start-to-ready time and resident
memory with an ONNX model (no torch in the process) vs a `.pt` model (torch imported).

    python bench/fast_detector.py --quick                # 2 rounds of 15 frames per leg, CPU
    python bench/fast_detector.py --device cuda          # on a GPU machine (ONNX on GPU needs onnxruntime-gpu)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the runtime helpers the tests use
sys.path.insert(0, str(ROOT / "src"))

import numpy as np
import psutil
from PIL import Image
from support import Machine, connect, module

from labelsieve.train.offline import ultralytics_offline


def jpeg_frames(n: int) -> list[bytes]:
    """640x480 JPEGs with some structure (noise would make JPEG decoding unrepresentatively slow)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def build_models(folder: Path, sizes: list[int]) -> dict[tuple[str, int], Path]:
    """yolo11n with random weights, saved per size as .pt (predicting at that size) and as ONNX exported at it."""
    from ultralytics import YOLO

    models = {}
    for size in sizes:
        import torch

        pt = folder / f"yolo11n-{size}.pt"
        YOLO("yolo11n.yaml").save(str(pt))
        checkpoint = torch.load(pt, weights_only=False)
        checkpoint["train_args"] = {"imgsz": size}  # as training records it: predict's default size for this .pt
        torch.save(checkpoint, pt)
        models["pt", size] = pt
        models["onnx", size] = Path(YOLO(str(pt)).export(format="onnx", imgsz=size, simplify=True, device="cpu"))
    return models


def in_process(model: Path, size: int, device: str) -> Callable[[bytes], object]:
    """ultralytics as a user calls it: YOLO(model).predict on the decoded frame."""
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="detect")
    dev = None if device == "cpu" and model.suffix == ".onnx" else device
    return lambda data: yolo.predict(Image.open(io.BytesIO(data)).convert("RGB"), imgsz=size, conf=0.25, iou=0.45,
                                     device=dev, verbose=False)


def fps_of(call: Callable[[bytes], object], frames: list[bytes]) -> float:
    call(frames[0])
    start = time.perf_counter()
    for data in frames:
        call(data)
    return len(frames) / (time.perf_counter() - start)


def service(model: Path, device: str) -> dict[str, Any]:
    return {"name": "det", "api": "rdk:service:vision", "model": "labelsieve:vision:fast-detector",
            "attributes": {"model_path": str(model), "confidence": 0.25, "iou": 0.45, "device": device}}


async def module_fps(address: str, frames: list[bytes]) -> float:
    from viam.media.video import ViamImage
    from viam.services.vision import VisionClient

    robot = await connect(address)
    try:
        det = VisionClient.from_robot(robot, "det")
        await det.get_detections(ViamImage(frames[0], "image/jpeg"))
        start = time.perf_counter()
        for data in frames:
            await det.get_detections(ViamImage(data, "image/jpeg"))
        return len(frames) / (time.perf_counter() - start)
    finally:
        await robot.close()


def compare(model: Path, size: int, frames: list[bytes], device: str, rounds: int,
            tmp: Path) -> tuple[float, float, float, float]:
    """(in-process f/s, module f/s, seconds from start to the module's first answer, module RSS in MB). The two legs
    alternate for `rounds` rounds and each keeps its best, so load from other processes skews neither side."""
    local = in_process(model, size, device)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    with Machine({"modules": [module("fast-detector")], "services": [service(model, device)]}, tmp) as machine:
        asyncio.run(module_fps(machine.address, frames[:1]))
        ready = time.perf_counter() - start
        best_local = best_module = 0.0
        for _ in range(rounds):
            best_local = max(best_local, fps_of(local, frames))
            best_module = max(best_module, asyncio.run(module_fps(machine.address, frames)))
        rss = psutil.Process(machine.module_pid("fast_detector")).memory_info().rss / 2**20
    return best_local, best_module, ready, rss


def onnx_on_gpu() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 15 frames per leg instead of 4 of 60")
    parser.add_argument("--sizes", default="320,640")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    frames = jpeg_frames(15 if args.quick else 60)
    rounds = 2 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as scratch:
        tmp = Path(scratch)
        os.environ["LABELSIEVE_HOME"] = str(tmp / "home")
        ultralytics_offline()
        models = build_models(tmp, sizes)
        print(f"\nfast detector, yolo11n random weights, 640x480 JPEG frames, device {args.device}, "
              f"best of {rounds} alternating rounds of {len(frames)} frames")
        print(f"{'model':6} {'size':>4} | {'in process':>12} | {'module':>12} | module/in process")
        fps: dict[tuple[str, int], float] = {}
        local: dict[tuple[str, int], float] = {}
        startup: dict[str, tuple[float, float]] = {}
        for (kind, size), model in models.items():
            device = args.device if kind == "pt" or onnx_on_gpu() else "cpu"  # onnxruntime (not -gpu): the CPU
            try:
                local[kind, size], fps[kind, size], ready, rss = compare(model, size, frames, device, rounds,
                                                                         tmp / f"{kind}{size}")
            except AssertionError as exc:  # e.g. ONNX on cuda without onnxruntime-gpu: report, go on
                print(f"{kind:6} {size:>4} | module failed: {str(exc).splitlines()[0]}")
                continue
            startup.setdefault(kind, (ready, rss))
            goal = 0.9 if size >= 640 else 0.8
            ratio = fps[kind, size] / local[kind, size]
            print(f"{kind:6} {size:>4} | {local[kind, size]:8.1f} f/s | {fps[kind, size]:8.1f} f/s | {ratio:5.2f} "
                  f"(goal >= {goal}: {'met' if ratio >= goal else 'MISSED'}) on {device}")
        for size in sizes:
            if ("onnx", size) in fps and ("pt", size) in fps:
                through, inside = fps["onnx", size] / fps["pt", size], local["onnx", size] / local["pt", size]
                goal = f" (goal on a CPU >= 2: {'met' if through >= 2 else 'MISSED'})" if args.device == "cpu" else ""
                print(f"ONNX / torch at {size}: through the module {through:.2f}x{goal}, "
                      f"ultralytics in process {inside:.2f}x")
        for kind, (ready, rss) in startup.items():
            print(f"module with a {kind:4} model: start to first answer {ready:5.2f} s, resident memory {rss:6.0f} MB")


if __name__ == "__main__":
    main()
