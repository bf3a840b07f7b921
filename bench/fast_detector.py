"""Time the fast detector: the model alone, ultralytics `predict` in process, and the module through `labelsieve run`.

A random-weight yolo11n (compute does not depend on the weights), as `.pt`, as ONNX exported at each size, and as that
ONNX quantized to int8 (static, calibrated on the benchmark's frames). Prints, per format and size, frames per second of
the model alone (onnxruntime `run`, or the torch module's forward, on a ready letterboxed tensor: no decode, no RPC, the
limit), in process, through the module, and through the module from a camera (`get_detections_from_camera`), and the
ratios (goals on 2 CPU cores: module >= 0.9 of in process, and >= 0.75 of the model alone at 320; ONNX >= 2x torch
through the module; int8 >= 1.5x float ONNX; on a GPU module >= 0.85 of in process); then the module's start-to-ready
time and resident memory with an ONNX model (no torch in the process) vs a `.pt` model (torch imported).

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
from support import Machine, camera, connect, module

from labelsieve import images
from labelsieve.detect.fast import OnnxModel, letterbox
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


def quantize(onnx: Path, frames: list[bytes]) -> Path:
    """The ONNX model as `labelsieve train --int8` quantizes it, calibrated on `frames` (a random-weight model has no
    held-out score to keep: this leg measures speed only)."""
    from labelsieve.train.quantize import quantize_onnx

    size = OnnxModel(onnx, "cpu").input_size
    out = onnx.with_suffix(".int8.onnx")
    quantize_onnx(onnx, out, [letterbox(images.open_checked(f), size)[0] for f in frames])
    return out


def model_alone(model: Path, size: int, frame: bytes, device: str) -> Callable[[bytes], object]:
    """The limit: only the network, on a tensor letterboxed once (onnxruntime `run`, or the fused torch module)."""
    if model.suffix == ".onnx":
        onnx = OnnxModel(model, device)
        tensor = letterbox(images.open_checked(frame), onnx.input_size)[0]
        return lambda _: onnx.run(tensor)
    import torch
    from ultralytics import YOLO

    image = Image.open(io.BytesIO(frame)).convert("RGB")
    yolo = YOLO(str(model), task="detect")
    yolo.predict(image, imgsz=size, device=device, verbose=False)
    network = yolo.predictor.model
    scale = min(size / image.width, size / image.height)
    w, h = round(image.width * scale), round(image.height * scale)
    shape = (h + (size - h) % 32, w + (size - w) % 32)  # predict's letterbox for a .pt pads to a multiple of 32 only
    ready = torch.from_numpy(letterbox(image, shape)[0]).to(network.device)

    def forward(_: bytes) -> object:
        with torch.inference_mode():
            return network(ready)
    return forward


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
            "attributes": {"model_path": str(model), "confidence": 0.25, "iou": 0.45, "device": device,
                           "camera_name": "cam"}}


async def module_fps(address: str, frames: list[bytes], from_camera: bool = False) -> float:
    """Frames per second of `get_detections` on each frame, or (`from_camera`) of `get_detections_from_camera`, whose
    frame comes from the camera module through the runtime (the same frames, served from the camera's folder)."""
    from viam.media.video import ViamImage
    from viam.services.vision import VisionClient

    robot = await connect(address)
    try:
        det = VisionClient.from_robot(robot, "det")
        await det.get_detections(ViamImage(frames[0], "image/jpeg"))
        start = time.perf_counter()
        for data in frames:
            if from_camera:
                await det.get_detections_from_camera("cam")
            else:
                await det.get_detections(ViamImage(data, "image/jpeg"))
        return len(frames) / (time.perf_counter() - start)
    finally:
        await robot.close()


def compare(model: Path, size: int, frames: list[bytes], device: str, rounds: int,
            tmp: Path) -> tuple[float, float, float, float, float, float]:
    """(model-alone f/s, in-process f/s, module f/s, from-camera f/s, seconds from start to the module's first answer,
    module RSS in MB). The legs alternate for `rounds` rounds and each keeps its best, so load from other processes
    skews none."""
    alone, local = model_alone(model, size, frames[0], device), in_process(model, size, device)
    (tmp / "frames").mkdir(parents=True)
    for i, data in enumerate(frames):
        (tmp / "frames" / f"{i:03d}.jpg").write_bytes(data)
    config = {"modules": [module("fast-detector"), module("media-camera")], "services": [service(model, device)],
              "components": [camera("cam", source=str(tmp / "frames"))]}
    start = time.perf_counter()
    with Machine(config, tmp) as machine:
        asyncio.run(module_fps(machine.address, frames[:1]))
        ready = time.perf_counter() - start
        best = [0.0] * 4
        for _ in range(rounds):
            legs = (fps_of(alone, frames), fps_of(local, frames), asyncio.run(module_fps(machine.address, frames)),
                    asyncio.run(module_fps(machine.address, frames, from_camera=True)))
            best = [max(b, leg) for b, leg in zip(best, legs)]
        rss = psutil.Process(machine.module_pid("fast_detector")).memory_info().rss / 2**20
    return best[0], best[1], best[2], best[3], ready, rss


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
        for size in sizes:
            models["int8", size] = quantize(models["onnx", size], frames)
        print(f"\nfast detector, yolo11n random weights, 640x480 JPEG frames, device {args.device}, "
              f"{len(os.sched_getaffinity(0))} cores, best of {rounds} alternating rounds of {len(frames)} frames")
        print(f"{'model':6} {'size':>4} | {'model alone':>12} | {'in process':>12} | {'module':>12} | "
              f"{'from camera':>12} | module/in process | module/model alone")
        fps: dict[tuple[str, int], float] = {}
        alone: dict[tuple[str, int], float] = {}
        startup: dict[str, tuple[float, float]] = {}
        for (kind, size), model in sorted(models.items(), key=lambda item: item[0][1]):
            device = args.device if kind == "pt" or onnx_on_gpu() else "cpu"  # onnxruntime (not -gpu): the CPU
            try:
                alone[kind, size], local, fps[kind, size], cam, ready, rss = compare(model, size, frames, device,
                                                                                     rounds, tmp / f"{kind}{size}")
            except AssertionError as exc:  # e.g. ONNX on cuda without onnxruntime-gpu: report, go on
                print(f"{kind:6} {size:>4} | module failed: {str(exc).splitlines()[0]}")
                continue
            startup.setdefault(kind, (ready, rss))
            ratio, limit = fps[kind, size] / local, fps[kind, size] / alone[kind, size]
            goal = 0.85 if device == "cuda" else 0.9
            limit_goal = f" (goal >= 0.75: {'met' if limit >= 0.75 else 'MISSED'})" if size == 320 else ""
            print(f"{kind:6} {size:>4} | {alone[kind, size]:8.1f} f/s | {local:8.1f} f/s | {fps[kind, size]:8.1f} f/s "
                  f"| {cam:8.1f} f/s | {ratio:5.2f} (goal >= {goal}: {'met' if ratio >= goal else 'MISSED'}) "
                  f"| {limit:5.2f}{limit_goal} on {device}")
        for size in sizes:
            for kind in ("onnx", "int8"):  # a model directory with both serves the int8 file
                if (kind, size) in fps and ("pt", size) in fps:
                    through = fps[kind, size] / fps["pt", size]
                    goal = f" (goal on a CPU >= 2: {'met' if through >= 2 else 'MISSED'})" if args.device == "cpu" else ""
                    print(f"{'ONNX' if kind == 'onnx' else 'int8 ONNX'} / torch at {size}: through the module "
                          f"{through:.2f}x{goal}, model alone {alone[kind, size] / alone['pt', size]:.2f}x")
            if ("onnx", size) in fps and ("int8", size) in fps:
                print(f"int8 / float32 ONNX at {size}: model alone {alone['int8', size] / alone['onnx', size]:.2f}x, "
                      f"through the module {fps['int8', size] / fps['onnx', size]:.2f}x (goal >= 1.5)")
        for kind, (ready, rss) in startup.items():
            print(f"module with a {kind:4} model: start to first answer {ready:5.2f} s, resident memory {rss:6.0f} MB")


if __name__ == "__main__":
    main()
