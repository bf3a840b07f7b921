"""Dataset versions from `.capture` files of synthetic scenes with known boxes, written as the data manager writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.scenes import write_scenes

from labelsieve.dataset import build_dataset, open_dataset, versions


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
