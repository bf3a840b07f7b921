"""`labelsieve label` in process: known labels from oracle stages, mixed sources (images, viam-server GetImages capture
files, a video), the output read by `dataset build`, bad input, stages behind a module, and tiny real models."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viam.proto.app.data import Annotations
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData, SensorMetadata

from labelsieve.capture.format import capture_file_name, write_capture
from labelsieve.errors import InputError
from labelsieve.label import label
from support import encode
from support.oracle import expected, module_stages_config, oracle_config, oracle_frame, outputs, scene, write_frames

os.environ["LABELSIEVE_LABEL_STAGES"] = "support.oracle"


def get_images_captures(folder: Path, layouts: list[list[str | None]]) -> list[Path]:
    """What viam-server's data manager writes for a camera's GetImages: one PNG per file, labeled with its source."""
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    paths = []
    for i, layout in enumerate(layouts):
        when = start + timedelta(seconds=i)
        stamp = Timestamp()
        stamp.FromDatetime(when)
        annotations = Annotations()
        annotations.classifications.add(label="color")
        header = DataCaptureMetadata(component_type="rdk:component:camera", component_name="cam", method_name="GetImages",
                                     type=DataType.DATA_TYPE_BINARY_SENSOR, mime_type="image/png")
        reading = SensorData(metadata=SensorMetadata(time_requested=stamp, time_received=stamp, annotations=annotations),
                             binary=encode(oracle_frame(layout, 20 + i), "PNG"))
        paths.append(write_capture(folder, header, [reading], name=capture_file_name(when)))
    return paths


def test_mixed_sources_get_exactly_the_oracle_labels_and_dataset_build_reads_them(tmp_path: Path) -> None:
    layouts = scene(8, seed=1)
    images = write_frames(tmp_path / "frames", layouts)
    (tmp_path / "frames" / "0008.png").write_bytes(images[-1].read_bytes())  # a still frame: the gate skips it
    captured = scene(4, seed=2)
    captures = get_images_captures(tmp_path / "capture" / "rdk_component_camera" / "cam" / "GetImages", captured)
    config = oracle_config(tmp_path / "machine.json", negative="no_glasses")

    summary = label([str(tmp_path / "frames"), str(tmp_path / "capture")], config, "labeler", str(tmp_path / "out"),
                    data_dir=tmp_path / "home", progress=False)

    want = {str(p): expected(layout, "no_glasses") for p, layout in zip(images, layouts)}
    want |= {f"{p}#0": expected(layout, "no_glasses") for p, layout in zip(captures, captured)}
    got = outputs(tmp_path / "out")
    assert {key: sorted(v["labels"]) for key, v in got.items()} == {k: sorted(v) for k, v in want.items() if v}
    assert summary["seen"] == 13 and summary["duplicates"] == 1 and summary["kept"] == len(got)
    assert summary["labels"] == {name: sum(v.count(name) for v in want.values()) for name in ("glasses", "no_glasses")
                                 if any(name in v for v in want.values())}
    assert not summary["failures"] and set(summary["seconds"]) >= {"read", "propose", "verify", "write"}
    assert json.loads(Path(summary["summary_file"]).read_text())["kept"] == summary["kept"]

    # The files are the live filter's + data manager's: layout, header, boxes, provenance, the frame's capture time.
    one = got[f"{captures[0]}#0"] if f"{captures[0]}#0" in got else next(iter(got.values()))
    header = one["header"]
    assert one["path"].parent == tmp_path / "out" / "rdk_service_vision" / "labeler" / "CaptureAllFromCamera"
    assert (header.component_type, header.component_name, header.method_name) == \
        ("rdk:service:vision", "labeler", "CaptureAllFromCamera")
    assert all(p and p["proposer"] == "det" and p["verifier"] == "ver" and p["question"] == "Glasses?"
               for v in got.values() for p in v["provenance"])
    for key, value in got.items():
        if "#" in key:
            assert value["origin"]["component"] == "rdk:component:camera/cam" and value["origin"]["source_name"] == "color"
            assert value["reading"].metadata.time_requested.ToDatetime(UTC).year == 2026

    from labelsieve.dataset import build_dataset

    built = build_dataset([str(tmp_path / "out")], tmp_path / "dataset", progress=False)
    # a frame with an asked-about box the verifier left unsure carries it as an ignore region: dataset build leaves it out
    unresolved = [v for v in got.values() if v["provenance"] and "ignore" in (v["provenance"][0] or {})]
    assert unresolved and len(built.summary["skipped"]) == len(unresolved)
    assert built.summary["boxes"] == sum(len(v["labels"]) for v in got.values()) - sum(len(v["labels"]) for v in unresolved)
    manifest = [json.loads(line) for line in (built.version.path / "manifest.jsonl").read_text().splitlines()]
    assert {row["class"] for row in manifest} <= {"glasses", "no_glasses"}
    assert all(row["provenance"]["verifier"] == "ver" for row in manifest)


@pytest.mark.parametrize("pace", [{"every": 2}, {"fps": 5.0}])  # a 10 fps clip: both keep frames 0, 2, 4
def test_a_video_every_nth_frame_or_n_frames_a_second(tmp_path: Path, pace: dict[str, Any]) -> None:
    import cv2
    import numpy as np

    layouts = scene(6, seed=3)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 120))
    for i, layout in enumerate(layouts):
        writer.write(cv2.cvtColor(np.asarray(oracle_frame(layout, 10 + i)), cv2.COLOR_RGB2BGR))
    writer.release()
    config = oracle_config(tmp_path / "machine.json")

    summary = label([str(path)], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home", progress=False,
                    **pace)

    got = outputs(tmp_path / "out")
    want = {f"{path}@{i}": expected(layouts[i]) for i in range(0, 6, 2)}
    assert summary["seen"] == 3
    assert {k: v["labels"] for k, v in got.items()} == {k: v for k, v in want.items() if v}


def test_bad_input_is_counted_and_named_and_a_missing_source_fails_at_once(tmp_path: Path) -> None:
    write_frames(tmp_path / "frames", scene(2))
    (tmp_path / "frames" / "0002.png").write_bytes(b"not a png")
    folder = tmp_path / "capture" / "rdk_component_camera" / "cam" / "GetImages"
    get_images_captures(folder, scene(1))
    (folder / "broken.capture").write_bytes(b"\x05abc")
    config = oracle_config(tmp_path / "machine.json")

    with pytest.raises(InputError, match="nowhere"):
        label([str(tmp_path / "frames"), str(tmp_path / "nowhere")], config, "labeler", str(tmp_path / "out"),
              data_dir=tmp_path / "home", progress=False)
    assert not (tmp_path / "out").exists()

    summary = label([str(tmp_path / "frames"), str(tmp_path / "capture")], config, "labeler", str(tmp_path / "out"),
                    data_dir=tmp_path / "home", progress=False)
    unreadable = summary["failures"]["unreadable"]
    assert unreadable["count"] == 2 and summary["seen"] == 3
    assert any("0002.png" in n for n in unreadable["named"]) and any("broken.capture" in n for n in unreadable["named"])


def test_stages_served_by_another_module_run_through_the_runtime(tmp_path: Path) -> None:
    """The scripted proposer and colour verifier are module processes: reached as the filter module reaches them."""
    frames, config = module_stages_config(tmp_path)

    summary = label([str(frames)], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home", progress=False)

    got = outputs(tmp_path / "out")
    assert {Path(k).name: v["labels"] for k, v in got.items()} == {"0.jpg": ["glasses"], "1.jpg": ["no_glasses"]}
    assert summary["nothing_verified"] == 1 and not summary["failures"]
    assert got[str(frames / "0.jpg")]["provenance"][0]["proposer"] == "proposer"


def test_tiny_real_models_run_in_process(tmp_path: Path, gdino_dir: Path) -> None:
    """labelsieve's own detector and verifier, built from their attributes in this process: every frame decided."""
    from labelsieve.demo.tiny_vlms import build_idefics3

    vlm = build_idefics3(tmp_path / "vlm")
    write_frames(tmp_path / "frames", scene(3))
    services = [{"name": "gd", "api": "rdk:service:vision", "model": "labelsieve:vision:grounding-detector",
                 "attributes": {"model": str(gdino_dir), "box_threshold": 0.0, "text_threshold": 0.0,
                                "max_detections": 2, "device": "cpu"}},
                {"name": "vl", "api": "rdk:service:vision", "model": "labelsieve:vision:vlm-verifier",
                 "attributes": {"backend": "transformers", "model": str(vlm), "image_size": 0}}]
    config = oracle_config(tmp_path / "machine.json", detector="gd", verifier="vl", extra_services=services)

    summary = label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                    progress=False)

    assert summary["seen"] == 3 and not summary["failures"], summary
    assert summary["kept"] + summary["nothing_verified"] == 3
    assert all(p["proposer"] == "gd" and p["verifier"] == "vl" for v in outputs(tmp_path / "out").values()
               for p in v["provenance"])


def test_any_fsspec_url_as_out_and_a_rerun_redoes_nothing(tmp_path: Path) -> None:
    import fsspec

    layouts = scene(5, seed=4)
    write_frames(tmp_path / "frames", layouts)
    config = oracle_config(tmp_path / "machine.json")
    url = "memory://labeled/run"

    first = label([str(tmp_path / "frames")], config, "labeler", url, data_dir=tmp_path / "home", progress=False)
    again = label([str(tmp_path / "frames")], config, "labeler", url, data_dir=tmp_path / "home", progress=False)

    fs = fsspec.filesystem("memory")
    written = [p for p in fs.find("/labeled/run") if p.endswith(".capture")]
    assert len(written) == first["kept"] == sum(bool(expected(layout)) for layout in layouts)
    assert not [p for p in fs.find("/labeled/run") if p.endswith(".prog")]
    assert fs.exists("/labeled/run/label-summary.json") and Path(first["ledger"]).is_relative_to(tmp_path / "home")
    assert again["this_run"]["frames"] == 5 and again["kept"] == first["kept"] and again["seconds"] == first["seconds"]


def test_labeled_captures_are_labeled_again(tmp_path: Path) -> None:
    """A CaptureAllFromCamera file (ours, labeled) is a camera frame like any other: its image gets the same labels."""
    layouts = scene(4, seed=6)
    write_frames(tmp_path / "frames", layouts)
    config = oracle_config(tmp_path / "machine.json")
    label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "first"), data_dir=tmp_path / "home",
          progress=False)

    label([str(tmp_path / "first")], config, "labeler", str(tmp_path / "second"), data_dir=tmp_path / "home",
          progress=False)

    first, second = outputs(tmp_path / "first"), outputs(tmp_path / "second")
    assert sorted(v["labels"] for v in second.values()) == sorted(v["labels"] for v in first.values())
    assert {v["origin"]["method"] for v in second.values()} == {"CaptureAllFromCamera"}
