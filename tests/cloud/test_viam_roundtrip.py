"""Captures in from Viam's app, labels out to it, against the local stand-in: what its store holds after each step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.media import encode, noise
from support.scenes import scene_frames, write_scenes
from support.viam_app import KEY, ViamApp

from labelsieve.cli import main
from labelsieve.dataset import build_dataset


def _seed(app: ViamApp, scenes: range, component: str = "cam") -> list[str]:
    """Images in the app as a machine would have synced them, two already boxed by hand."""
    ids = []
    for scene in scenes:
        for t, (image, boxes) in enumerate(scene_frames(scene, 2)):
            hand = tuple((label, *xyxy) for label, xyxy in boxes) if scene == 0 else ()
            ids.append(app.add_image(encode(image, quality=95), component=component, boxes=hand,  # type: ignore[arg-type]
                                     seconds=1_700_000_000 + scene * 60 + t))
    return ids


def test_pull_by_filter_pages_and_resumes(app: ViamApp, tmp_path: Path) -> None:
    ids = _seed(app, range(110))  # 220 images: three pages of at most 100
    _seed(app, range(200, 203), component="other")
    result = build_dataset(["viam://data?component=cam"], tmp_path / "ds", progress=False)
    assert result.version.info["sources"] and result.summary["images"] == 220
    assert result.summary["boxes"] == sum(len(app.boxes(i)) for i in ids[:2])  # the hand-drawn boxes came along
    cached = sorted((tmp_path / "home" / "viam").rglob("*.capture"))
    assert len(cached) == 220
    # A re-run downloads nothing again, but sees a box added in the app since.
    app.binaries[ids[5]].metadata.annotations.bboxes.add(label="red", x_min_normalized=0.1, y_min_normalized=0.1,
                                                         x_max_normalized=0.5, y_max_normalized=0.5)
    before = {p: p.stat().st_mtime_ns for p in cached}
    again = build_dataset(["viam://data?component=cam"], tmp_path / "ds", progress=False)
    assert again.created and again.summary["boxes"] == result.summary["boxes"] + 1
    changed = [p for p in cached if p.stat().st_mtime_ns != before[p]]
    assert len(changed) == 1


def test_pull_a_dataset_by_name_and_push_labels_back(app: ViamApp, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ids = _seed(app, range(4))
    app.add_dataset("field", ids[:6])
    pulled = build_dataset(["viam://dataset/field"], tmp_path / "ds", progress=False).version
    assert pulled.info and json.loads((pulled.path / "summary.json").read_text())["images"] == 6

    # Relabel what came from Viam, add frames that never were there, then push twice.
    write_scenes(tmp_path / "local", range(50, 52), frames=2)
    version = build_dataset(["viam://dataset/field", str(tmp_path / "local")], tmp_path / "ds2", progress=False).version
    from labelsieve.cloud.push import push

    first = push(version, "viam://dataset/labelsieve-out", progress=False)
    (out,) = [d for d in app.datasets.values() if d.name == "labelsieve-out"]
    members = [i for i, b in app.binaries.items() if out.id in b.metadata.dataset_ids]
    assert first.uploaded == 4 and first.labeled == 6 and len(members) == 10 and not first.failed
    uploads = len(app.uploads)
    boxes = {i: app.boxes(i) for i in members}
    assert first.boxes_present == sum(len(app.boxes(i)) for i in ids[:2])  # the hand boxes were not added again
    assert all(conf is not None and 0 < conf <= 1 for i in members for *_, conf in app.boxes(i) if i not in ids[:2])
    assert all(not app.binaries[i].metadata.capture_metadata.tags for i in members)  # no tags: they'd become classes
    assert main(["push", str(version.path), "viam://dataset/labelsieve-out", "--no-progress"]) == 0
    assert "0 boxes added" in capsys.readouterr().out and len(app.uploads) == uploads
    assert {i: app.boxes(i) for i in members} == boxes and len(app.datasets) == 2


def test_an_image_too_large_for_a_call_is_left_out_and_said(app: ViamApp, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    ids = _seed(app, range(3))
    huge = app.add_image(encode(noise(800, 600), quality=100))
    app.max_reply_bytes = max(len(app.binaries[i].binary) for i in ids) + 1  # one small image per call, not the huge one
    result = build_dataset(["viam://data"], tmp_path / "ds", progress=False)
    assert result.summary["images"] == len(ids)
    assert any(huge in r.getMessage() and "RESOURCE_EXHAUSTED" in r.getMessage() for r in caplog.records)
    assert any("1 of 7 images could not be downloaded" in r.getMessage() for r in caplog.records)


def test_wrong_key_is_one_line_without_the_key(app: ViamApp, tmp_path: Path) -> None:
    env = {**os.environ, "VIAM_API_KEY": KEY + "-wrong", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "labelsieve", "dataset", "build", "viam://data", str(tmp_path / "ds")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the API key" in lines[0] and "VIAM_API_KEY" in lines[0]
    assert KEY not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("url", ["viam://dataset/", "viam://data?colour=red", "viam://elsewhere/x"])
def test_bad_urls_say_what_is_taken(app: ViamApp, tmp_path: Path, url: str) -> None:
    from labelsieve.errors import InputError

    with pytest.raises(InputError, match="viam://"):
        build_dataset([url], tmp_path / "ds", progress=False)
