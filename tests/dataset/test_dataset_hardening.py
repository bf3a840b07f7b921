"""`dataset build` against hostile captures: one bad image or one unusable box never aborts a build, and never slips in."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from support.media import bomb_png, encode, noise
from support.scenes import write_scenes
from viam.proto.app.data import Annotations, BoundingBox
from viam.proto.app.datasync import DataCaptureMetadata, SensorData, SensorMetadata

from labelsieve.capture.format import capture_dir_for, encode_provenance, write_capture
from labelsieve.dataset import build_dataset

PIL_DEFAULT = 89_478_485  # PIL's own MAX_IMAGE_PIXELS: an import that stops switching its check off restores it


def capture(root: Path, name: str, readings: list[tuple[bytes, list[BoundingBox]]]) -> None:
    folder = capture_dir_for(root, "rdk:service:vision", "labeler", "CaptureAllFromCamera")
    header = DataCaptureMetadata(component_type="rdk:service:vision", component_name="labeler",
                                 method_name="CaptureAllFromCamera", type=1, mime_type="image/png")
    write_capture(folder, header, [SensorData(metadata=SensorMetadata(time_requested=Timestamp(seconds=1_700_000_000 + i),
                                                                      annotations=Annotations(bboxes=boxes)),
                                              binary=data) for i, (data, boxes) in enumerate(readings)], name=name)


def box(label: str = "red", x0: float = 0.1, y0: float = 0.1, x1: float = 0.5, y1: float = 0.5) -> BoundingBox:
    return BoundingBox(label=label, x_min_normalized=x0, y_min_normalized=y0, x_max_normalized=x1, y_max_normalized=y1,
                       confidence=0.9)


@pytest.mark.parametrize("pil_limit", [None, PIL_DEFAULT], ids=["pil-check-off", "pil-check-on"])
def test_over_limit_images_are_skipped_and_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  pil_limit: int | None) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
    write_scenes(tmp_path / "capture", range(2))
    capture(tmp_path / "capture", "bombs", [(bomb_png(12_000, 12_000), [box()]),  # 144 MP: over labelsieve's 64 MP
                                            (bomb_png(20_000, 20_000), [box()])])  # 400 MP: over PIL's own limit too
    result = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False)
    assert result.created and result.summary["images"] == 6
    reasons = {s["reason"].split(": ", 1)[0].rsplit("#", 1)[1]: s["reason"] for s in result.summary["skipped"]}
    assert sorted(reasons) == ["0", "1"] and all("pixels" in r or "limit" in r for r in reasons.values())
    assert "12000x12000 = 144,000,000 pixels is over the limit" in reasons["0"]


def test_a_frame_with_an_unusable_box_is_skipped_and_listed_never_kept_as_background(tmp_path: Path) -> None:
    frames = {
        "nan": [box(x0=math.nan)],
        "infinite": [box(x1=math.inf)],
        "outside": [box(x0=1.2, x1=1.5)],
        "inverted": [box(x0=0.6, x1=0.2)],
        "no label": [box(label="")],
        "clips": [box(x0=-0.05, x1=0.5, y1=1.04)],  # a little out of frame: clipped and kept
    }
    capture(tmp_path / "capture", "boxes", [(encode(noise(64, 64, seed=i), "PNG"), b)  # each its own picture
                                            for i, b in enumerate(frames.values())])
    result = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False)
    summary = result.summary
    assert summary["images"] == 1 and summary["background_images"] == 0 and summary["boxes"] == 1
    skipped = [s["reason"] for s in summary["skipped"]]
    assert len(skipped) == 5
    for i, why in enumerate(("not a finite number", "not a finite number", "wholly outside", "inverted or empty",
                             "has no label")):
        assert f"#{i}: box 0" in skipped[i] and why in skipped[i]
    manifest = [json.loads(line) for line in (result.version.path / "manifest.jsonl").read_text().splitlines()]
    assert [row["box"] for row in manifest] == [[0.0, 0.1, 0.5, 1.0]]
    assert json.loads((result.version.path / "summary.json").read_text())["skipped"] == summary["skipped"]


def test_frames_with_ignore_regions_are_skipped_or_filled(tmp_path: Path) -> None:
    """Issue 19: an unresolved asked-about box never becomes background: skipped by default, painted over on request."""
    rows = [{"box": [0.6, 0.6, 0.9, 0.9], "label": "red", "rule": 0, "why": "unsure"}]
    ignored = BoundingBox(label="red", x_min_normalized=0.1, y_min_normalized=0.1, x_max_normalized=0.4,
                          y_max_normalized=0.4, confidence=0.9, id=encode_provenance({"answer": "yes", "ignore": rows}))
    overlapping = BoundingBox(label="red", x_min_normalized=0.5, y_min_normalized=0.5, x_max_normalized=0.7,
                              y_max_normalized=0.7, confidence=0.9, id=encode_provenance({"ignore": rows}))
    picture = Image.new("RGB", (64, 64), (250, 250, 250))
    picture.paste((0, 0, 0), (40, 40, 56, 56))  # the unresolved object, inside the ignore region
    white = encode(picture, "PNG")
    capture(tmp_path / "capture", "ignore", [(white, [ignored]), (encode(noise(64, 64), "PNG"), [overlapping]),
                                             (encode(noise(64, 64, seed=5), "PNG"), [box()])])
    skipped = build_dataset([str(tmp_path / "capture")], tmp_path / "skip", progress=False).summary
    assert skipped["images"] == 1 and [s["reason"].split(": ", 1)[1][:20] for s in skipped["skipped"]] == [
        "1 ignore region(s) ("] * 2
    filled = build_dataset([str(tmp_path / "capture")], tmp_path / "fill", progress=False, fill_ignore=True)
    assert filled.summary["images"] == 2 and filled.summary["ignore_regions_filled"] == 1
    assert ["overlaps a labeled box" in s["reason"] for s in filled.summary["skipped"]] == [True]
    [image] = [p for p in (filled.version.path / "images").rglob("*.png") if Image.open(p).getpixel((2, 2)) == (250,) * 3]
    painted = Image.open(image).convert("RGB")
    assert painted.getpixel((48, 48)) == painted.getpixel((40, 40)) != (0, 0, 0)  # painted over in the mean colour
    assert painted.getpixel((20, 20)) == (250, 250, 250)  # the labeled box untouched
