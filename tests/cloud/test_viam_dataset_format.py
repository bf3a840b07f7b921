"""Viam's dataset format (`viam dataset export`: dataset.jsonl + data/) written from a dataset version and read back as a
`dataset build` source, and a hand-written export as Viam's CLI writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.media import encode, solid
from support.scenes import write_scenes

from labelsieve.cli import main
from labelsieve.cloud.jsonl import go_time, parse_go_time
from labelsieve.dataset import build_dataset

KEYS = {"annotation_label", "x_min_normalized", "x_max_normalized", "y_min_normalized", "y_max_normalized", "confidence"}


def test_export_then_build_from_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABELSIEVE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    write_scenes(tmp_path / "capture", range(6), frames=2)
    version = build_dataset([str(tmp_path / "capture")], tmp_path / "ds", progress=False).version
    assert main(["export", str(tmp_path / "ds"), "--format", "viam", "exported"]) == 0
    assert capsys.readouterr().out.strip() == "exported/dataset.jsonl"
    lines = [json.loads(line) for line in Path("exported/dataset.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and all(line["image_path"].startswith("exported/data/") for line in lines)
    assert all(Path(line["image_path"]).is_file() and line["classification_annotations"] == [] for line in lines)
    boxes = [box for line in lines for box in line["bounding_box_annotations"]]
    assert boxes and all(set(box) == KEYS and 0 <= box["x_min_normalized"] < box["x_max_normalized"] <= 1
                         and box["confidence"] == 0.9 for box in boxes)
    assert all(parse_go_time(line["timestamp"]) is not None for line in lines)

    again = build_dataset(["exported"], tmp_path / "ds2", progress=False)
    assert again.summary["images"] == 12 and again.summary["boxes"] == len(boxes)
    assert set(again.version.classes) == set(version.classes)


def test_build_reads_an_export_as_viams_cli_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELSIEVE_HOME", str(tmp_path / "home"))
    export = tmp_path / "export"
    (export / "data").mkdir(parents=True)
    lines = []
    for i, color in enumerate(("red", "green", "blue")):
        name = f"2024-05-01T12_00_0{i}.5Z_abc{i}.jpeg"
        (export / "data" / name).write_bytes(encode(solid(color, 64, 48)))
        lines.append({"image_path": f"/gcs/bucket/{name}", "classification_annotations": [{"annotation_label": "tagged"}],
                      "bounding_box_annotations": [{"id": f"b{i}", "annotation_label": color, "x_min_normalized": 0.1,
                                                    "x_max_normalized": 0.5, "y_min_normalized": 0.2, "y_max_normalized": 0.6}],
                      "timestamp": f"2024-05-01 12:00:0{i}.5 +0000 UTC", "part_id": "p", "component_name": "cam",
                      "binary_data_id": f"o/l/{i}", "organization_id": "o"})
    (export / "dataset.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = build_dataset([str(export)], tmp_path / "ds", progress=False)
    assert result.summary["images"] == 3 and result.version.classes == ("blue", "green", "red")
    manifest = [json.loads(line) for line in (result.version.path / "manifest.jsonl").read_text().splitlines()]
    assert {row["time"] for row in manifest} == {1714564800.5, 1714564801.5, 1714564802.5}
    assert all(row["confidence"] == 1.0 and row["box"] == [0.1, 0.2, 0.5, 0.6] for row in manifest)


def test_go_time_round_trip() -> None:
    assert go_time(1714564800.5) == "2024-05-01 12:00:00.5 +0000 UTC"
    assert go_time(1714564800) == "2024-05-01 12:00:00 +0000 UTC"
    assert parse_go_time("2024-05-01 14:00:00.123456789 +0200 CEST m=+0.1") == pytest.approx(1714564800.123456789)
