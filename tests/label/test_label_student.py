"""`labelsieve label` with the filter's `student`: a stand-in student of known errors (it misses the red box in slot 0
and calls blue boxes glasses at an unsure score), so which frames the teacher sees and which are written is known."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from labelsieve.errors import ConfigError
from labelsieve.label import label
from support.oracle import module_stages_config, oracle_config, outputs, write_frames

os.environ["LABELSIEVE_LABEL_STAGES"] = "support.oracle"

LAYOUTS: list[list[str | None]] = [
    [None, "yes", None, None],  # the student is right and sure: skipped
    [None, "yes", "no", None],  # an extra box at 0.5: the teacher runs, disagrees (extra): written
    ["yes", "yes", None, None],  # the missed box, but the student is sure: skipped (the miss is not seen)
    [None, None, "no", "yes"],  # extra again, another scene: written
    ["yes", None, "no", None],  # missed + extra: written
    [None, None, None, "yes"],  # right and sure: skipped
]


def student_config(path: Path, **policy: Any) -> Path:
    config = oracle_config(path, extra_services=[{"name": "stu", "api": "rdk:service:vision",
                                                  "model": "test:vision:oracle-student",
                                                  "attributes": {"miss": 0, "extra": True}}])
    raw = json.loads(config.read_text())
    raw["services"][0]["attributes"] |= {"student": "stu", "teacher_sample_rate": 0.0, "novelty_window": 0, **policy}
    config.write_text(json.dumps(raw))
    return config


def test_the_student_chooses_the_frames_the_teacher_labels_and_a_rerun_redoes_none(tmp_path: Path) -> None:
    images = write_frames(tmp_path / "frames", LAYOUTS)
    config = student_config(tmp_path / "machine.json")

    summary = label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                    progress=False)

    got = outputs(tmp_path / "out")
    assert {key: v["labels"] for key, v in got.items()} == {str(images[1]): ["glasses"], str(images[3]): ["glasses"],
                                                            str(images[4]): ["glasses"]}
    kinds = {key: v["provenance"][0]["student"]["kind"] for key, v in got.items()}
    assert kinds == {str(images[1]): ["extra"], str(images[3]): ["extra"], str(images[4]): ["missed", "extra"]}
    record = got[str(images[4])]["provenance"][0]["student"]
    assert record["teacher_reasons"] == ["unsure"] and [b[4:] for b in record["student_boxes"]] == [["glasses", 0.5]]

    stats = summary["student"]
    assert (stats["frames"], stats["teacher_calls"], stats["teacher_calls_saved"]) == (6, 3, 3)
    assert stats["disagreements"] == {"missed": 1, "extra": 3, "wrong_class": 0} and stats["frames_disagreed"] == 3
    assert stats["student_precision"] == pytest.approx(2 / 5) and stats["student_recall"] == pytest.approx(2 / 3)
    assert summary["kept"] == 3 and summary["seen"] == 6 and not summary["failures"]

    # every frame is done, skipped ones included: a second run labels nothing and writes nothing
    again = label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                  progress=False)
    assert again["student"]["frames"] == 0 and outputs(tmp_path / "out").keys() == got.keys()
    assert again["kept"] == 3 and again["seen"] == 6


def test_a_student_that_is_sure_only_costs_the_sampled_teacher_calls(tmp_path: Path) -> None:
    """Every frame sampled: the teacher sees all; the agreements are written, marked as such."""
    images = write_frames(tmp_path / "frames", [[None, "yes", None, None], [None, None, None, "yes"]])
    config = student_config(tmp_path / "machine.json", teacher_sample_rate=1.0)

    summary = label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                    progress=False)

    got = outputs(tmp_path / "out")
    assert {key: v["provenance"][0]["student"]["kind"] for key, v in got.items()} == \
        {str(p): ["agreement"] for p in images}
    assert summary["student"]["agreements_kept"] == 2 and summary["student"]["teacher_reasons"]["sampled"] == 2


def test_ray_refuses_a_student_in_one_line(tmp_path: Path) -> None:
    write_frames(tmp_path / "frames", LAYOUTS[:1])
    with pytest.raises(ConfigError, match="without --ray"):
        label([str(tmp_path / "frames")], student_config(tmp_path / "machine.json"), "labeler", str(tmp_path / "out"),
              data_dir=tmp_path / "home", ray="auto", progress=False)


def test_labelsieves_fast_detector_is_the_student_in_process(tmp_path: Path) -> None:
    """A real fast detector (an ONNX head answering one fixed box: glasses in slot 1 at 0.5, unsure) built from its
    attributes: where the frame has that box the teacher agrees (skipped); elsewhere it is extra and slot 3 is missed."""
    from support.onnx_models import yolo_onnx

    yolo_onnx(tmp_path / "fast" / "model.onnx", ["glasses"], [(119.5, 160.5, 55, 81, 0, 0.5)], size=320)
    images = write_frames(tmp_path / "frames", [[None, "yes", None, None], [None, None, None, "yes"]])
    config = student_config(tmp_path / "machine.json")
    raw = json.loads(config.read_text())
    raw["services"][-1] = {"name": "stu", "api": "rdk:service:vision", "model": "labelsieve:vision:fast-detector",
                           "attributes": {"model_path": "fast/model.onnx", "device": "cpu"}}
    config.write_text(json.dumps(raw))

    summary = label([str(tmp_path / "frames")], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                    progress=False)

    got = outputs(tmp_path / "out")
    assert {key: v["provenance"][0]["student"]["kind"] for key, v in got.items()} == {str(images[1]): ["missed", "extra"]}
    stats = summary["student"]
    assert (stats["teacher_calls"], stats["disagreements"]) == (2, {"missed": 1, "extra": 1, "wrong_class": 0})
    assert summary["kept"] == 1 and summary["seen"] == 2


def test_a_student_served_by_a_module_runs_through_the_runtime(tmp_path: Path) -> None:
    """The scripted proposer as the student: unsure glasses on all three frames; the teacher agrees on the red box,
    says no_glasses on the blue one (a wrong class: written), and leaves the green one unsure (never written)."""
    frames, config = module_stages_config(tmp_path)
    box = [[100, 20, 200, 100, 0.5, "glasses"]]
    (tmp_path / "student.json").write_text(json.dumps({f"{i}.jpg": box for i in range(3)}))
    raw = json.loads(config.read_text())
    raw["services"].append({"name": "stu", "api": "rdk:service:vision", "model": "test:vision:scripted-proposer",
                            "attributes": {"frames": str(frames), "boxes": str(tmp_path / "student.json")}})
    raw["services"][0]["attributes"] |= {"student": "stu", "teacher_sample_rate": 0.0, "novelty_window": 0}
    config.write_text(json.dumps(raw))

    summary = label([str(frames)], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home", progress=False)

    got = outputs(tmp_path / "out")
    assert {key: (v["labels"], v["provenance"][0]["student"]["kind"]) for key, v in got.items()} == \
        {str(frames / "1.jpg"): (["no_glasses"], ["wrong_class"])}
    stats = summary["student"]
    assert (stats["teacher_calls"], stats["teacher_unsettled"], stats["frames_disagreed"]) == (3, 1, 1)
    assert stats["disagreements"]["wrong_class"] == 1 and summary["seen"] == 3 and not summary["failures"]


def test_novelty_is_per_stream_and_the_stats_are_summed(tmp_path: Path) -> None:
    """Two streams showing the same thing: each one's first frame is new to its own stream, so the teacher sees both."""
    layouts: list[list[str | None]] = [[None, "yes", None, None], [None, "yes", None, None]]
    write_frames(tmp_path / "a", layouts[:1])
    write_frames(tmp_path / "b", layouts[1:])
    config = student_config(tmp_path / "machine.json", novelty_window=5)

    summary = label([str(tmp_path / "a"), str(tmp_path / "b")], config, "labeler", str(tmp_path / "out"),
                    data_dir=tmp_path / "home", progress=False)

    stats = summary["student"]
    assert (stats["frames"], stats["teacher_calls"], stats["teacher_reasons"]["novel"]) == (2, 2, 2)
    assert stats["student_precision"] == 1.0 and not outputs(tmp_path / "out") and summary["seen"] == 2
