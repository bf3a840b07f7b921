"""Synthetic scenes as the data manager captures them (`.capture` files of coloured boxes with known labels and
provenance), and one tiny model trained on them: what the dataset, training, fast-detector and deploy tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image, ImageDraw
from viam.proto.app.data import Annotations, BoundingBox
from viam.proto.app.datasync import DataCaptureMetadata, SensorData, SensorMetadata

from labelsieve.capture.format import capture_dir_for, encode_provenance, write_capture
from support.media import encode

__all__ = ["COLORS", "scene_frames", "train_tiny", "write_scenes"]

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "not_red": (30, 200, 30)}  # "not_red": a verified negative


Boxes = list[tuple[str, tuple[float, ...]]]  # (label, normalized xyxy) per object


def scene_frames(scene: int, frames: int, size: int = 64,
                 classes: tuple[str, ...] = ("red", "blue")) -> list[tuple[Image.Image, Boxes]]:
    """Consecutive frames of one scene: its own background, objects that drift a pixel per frame."""
    rng = np.random.default_rng(scene)
    base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    background = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
    objects = []
    for label in rng.choice(classes, size=rng.integers(1, 3)):
        w, h = rng.integers(size // 5, size // 2, 2)
        x, y = rng.integers(0, size - w - 3), rng.integers(0, size - h - 3)
        objects.append((str(label), int(x), int(y), int(w), int(h)))
    out = []
    for t in range(frames):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        boxes = []
        for label, x, y, w, h in objects:
            draw.rectangle((x + t, y + t, x + t + w - 1, y + t + h - 1), fill=COLORS[label])
            boxes.append((label, ((x + t) / size, (y + t) / size, (x + t + w) / size, (y + t + h) / size)))
        out.append((image, boxes))
    return out


def write_scenes(capture_dir: Path, scenes: range, frames: int = 3, classes: tuple[str, ...] = ("red", "blue"),
                 size: int = 64) -> list[Path]:
    """One capture file per frame (a binary capture holds one reading), frames 1 s apart, scenes a minute apart."""
    folder = capture_dir_for(capture_dir, "rdk:service:vision", "labeler", "CaptureAllFromCamera")
    header = DataCaptureMetadata(component_type="rdk:service:vision", component_name="labeler",
                                 method_name="CaptureAllFromCamera", type=1, mime_type="image/jpeg")
    paths = []
    for scene in scenes:
        for t, (image, boxes) in enumerate(scene_frames(scene, frames, size, classes)):
            bboxes = [BoundingBox(label=label, x_min_normalized=x0, y_min_normalized=y0, x_max_normalized=x1,
                                  y_max_normalized=y1, confidence=0.9,
                                  id=encode_provenance({"answer": "no" if label.startswith("not_") else "yes",
                                                        "proposer": "gd", "agreement": 0.9}))
                      for label, (x0, y0, x1, y1) in boxes]
            meta = SensorMetadata(time_requested=Timestamp(seconds=1_700_000_000 + scene * 60 + t),
                                  annotations=Annotations(bboxes=bboxes))
            paths.append(write_capture(folder, header, [SensorData(metadata=meta, binary=encode(image, quality=95))],
                                       name=f"scene{scene:03d}-{t}"))
    return paths


def train_tiny(root: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """(model directory, the CLI's stdout) for a 3-epoch yolo11n on 24 scenes of 3 frames at 64 px."""
    from labelsieve.dataset import build_dataset

    write_scenes(root / "capture", range(24))
    build_dataset([str(root / "capture")], root / "dataset", progress=False)
    run = subprocess.run([sys.executable, "-m", "labelsieve", "train", str(root / "dataset"), "--epochs", "3",
                          "--imgsz", "64", "--batch", "16", "--workers", "0", "--device", "cpu", "--out",
                          str(root / "models")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (root / "train.stdout").write_text(run.stdout)  # what the user saw, for tests/train
    (root / "train.stderr").write_text(run.stderr)
    return Path(run.stdout.strip().splitlines()[-1]), run.stdout
