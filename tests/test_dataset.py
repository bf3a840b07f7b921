"""Dataset versions from `.capture` files of synthetic scenes with known boxes, written as the data manager writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image, ImageDraw
from viam.proto.app.data import Annotations, BoundingBox
from viam.proto.app.datasync import DataCaptureMetadata, SensorData, SensorMetadata

from labelsieve.capture.format import capture_dir_for, encode_provenance, write_capture
from labelsieve.dataset import build_dataset, open_dataset, versions
from support import encode

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


def test_build_exports_yolo_and_coco_with_provenance(tmp_path: Path) -> None:
    write_scenes(tmp_path / "capture", range(12), classes=("red", "blue", "not_red"))
    result = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False)
    version = result.version
    assert result.created and version.name == "v1" and version.path == tmp_path / "ds" / "v1"
    assert set(version.classes) == {"red", "blue", "not_red"}
    assert version.info["negative_classes"] == ["not_red"]
    summary = json.loads((version.path / "summary.json").read_text())
    assert summary["images"] == 36 and summary["split"]["train"] + summary["split"]["val"] == 36
    assert summary["split"]["val"] > 0 and summary["skipped"] == []
    manifest = [json.loads(line) for line in (version.path / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == summary["boxes"] and all(row["provenance"]["proposer"] == "gd" for row in manifest)
    assert {row["provenance"]["answer"] for row in manifest if row["class"] == "not_red"} == {"no"}
    for split in ("train", "val"):
        coco = json.loads((version.path / "annotations" / f"instances_{split}.json").read_text())
        assert len(coco["images"]) == summary["split"][split]
        assert [c["name"] for c in coco["categories"]] == list(version.classes)
        labels = sorted((version.path / "labels" / split).glob("*.txt"))
        assert len(labels) == len(coco["images"]) == len(list((version.path / "images" / split).iterdir()))
        assert sum(len(p.read_text().splitlines()) for p in labels) == len(coco["annotations"])


def test_split_keeps_each_scene_on_one_side_and_is_seeded(tmp_path: Path) -> None:
    write_scenes(tmp_path / "capture", range(20), frames=4)
    first = build_dataset([str(tmp_path / "capture")], tmp_path / "a", seed=1, progress=False).version
    sides: dict[str, set[str]] = {}
    for row in map(json.loads, (first.path / "manifest.jsonl").read_text().splitlines()):
        scene = Path(row["source"].split("#")[0]).name.split("-")[0]
        sides.setdefault(scene, set()).add(row["split"])
    assert all(len(s) == 1 for s in sides.values()), sides  # no scene leaks across the split
    assert {"train", "val"} == set().union(*sides.values())
    again = build_dataset([str(tmp_path / "capture")], tmp_path / "b", seed=1, progress=False).version
    other = build_dataset([str(tmp_path / "capture")], tmp_path / "c", seed=2, progress=False).version
    assert again.id == first.id and other.id != first.id


def test_class_order_is_frozen_across_versions(tmp_path: Path) -> None:
    write_scenes(tmp_path / "capture", range(4), classes=("red",))
    write_scenes(tmp_path / "capture", range(4, 8), classes=("blue",))
    v1 = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False).version
    assert v1.classes == ("blue", "red")
    write_scenes(tmp_path / "more", range(8, 12), classes=("not_red", "red"))
    v2 = build_dataset([str(tmp_path / "more")], tmp_path / "ds", progress=False).version
    assert v2.name == "v2" and v2.classes == ("blue", "red", "not_red")  # "blue" absent from v2's frames, kept at 0
    assert v2.info["parent"] == v1.id
    red = v2.classes.index("red")
    assert all(line.split()[0] in (str(red), "2") for p in (v2.path / "labels").rglob("*.txt")
               for line in p.read_text().splitlines())
    same = build_dataset([str(tmp_path / "more")], tmp_path / "ds", progress=False)
    assert not same.created and same.version.name == "v2"
    assert [v.name for v in versions(tmp_path / "ds")] == ["v1", "v2"] and open_dataset(tmp_path / "ds").id == v2.id


def test_corrupt_and_truncated_captures_are_reported_and_skipped(tmp_path: Path) -> None:
    good = write_scenes(tmp_path / "capture", range(3))
    good[0].write_bytes(good[0].read_bytes()[: len(good[0].read_bytes()) // 2])  # truncated mid-image
    (good[1].parent / "garbage.capture").write_bytes(os.urandom(300))
    (good[1].parent / "empty.capture").write_bytes(b"")
    result = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False)
    skipped = {Path(s["source"]).name for s in result.summary["skipped"]}
    assert skipped == {good[0].name, "garbage.capture", "empty.capture"}
    assert result.summary["images"] == len(good) - 1


def test_build_from_s3_and_cli_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec
    from support.s3 import s3_server

    files = write_scenes(tmp_path / "capture", range(5))
    with s3_server() as env:
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.put(str(tmp_path / "capture") + "/", f"{env['BUCKET']}/sync/", recursive=True)
        url = f"s3://{env['BUCKET']}/sync"
        run = subprocess.run([sys.executable, "-m", "labelsieve", "dataset", "build", url, str(tmp_path / "ds")],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **env})
        assert run.returncode == 0, run.stderr
        version = open_dataset(tmp_path / "ds")
        fs.put(str(tmp_path / "ds" / "v1") + "/", f"{env['BUCKET']}/datasets/v1/", recursive=True)
        monkeypatch.setenv("LABELSIEVE_HOME", str(tmp_path / "home"))
        remote = open_dataset(f"s3://{env['BUCKET']}/datasets")  # what `labelsieve train s3://...` opens
    assert remote.id == version.id and remote.path.is_relative_to(tmp_path / "home")
    assert json.loads((version.path / "summary.json").read_text())["images"] == len(files)
    assert run.stdout.strip().splitlines()[-1] == str(version.path)
    assert all(s.startswith("s3://") for s in version.info["sources"])
    assert len(list((tmp_path / "ds" / ".cache").iterdir())) == len(files)  # a rebuild reads the cache, not the bucket


def test_ultralytics_accepts_the_dataset(tmp_path: Path) -> None:
    write_scenes(tmp_path / "capture", range(6))
    version = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False).version
    from labelsieve.train.offline import ultralytics_offline

    ultralytics_offline(tmp_path / "yolo")
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(version.data_yaml))
    assert data["names"] == dict(enumerate(version.classes)) and Path(data["val"]) == version.path / "images" / "val"
