"""`labelsieve eval` through the real runtime: synthetic scenes whose stand-in stages have set error rates, so every
number in the report is known exactly.

Each frame holds squares the scripted proposer calls "person" and the colour verifier judges: red glasses (truth; "yes"),
green glasses (truth; the verifier is "unsure": a verifier miss), blue faces (not truth; "no": a proposer false positive
the verifier removes) and, in even frames, a red decoy (not truth; "yes": a false positive both stages make). The proposer
misses the first red square in every fourth frame and proposes one weak box (under min_confidence) on every frame.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from support import TEST_MODULES, camera, module

from labelsieve.errors import InputError
from labelsieve.eval import evaluate, load_coco

FRAMES = 8
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)
SIDE = 40
RULES = [{"detect": "person", "question": "Is this person wearing glasses?", "label": "glasses", "min_confidence": 0.3}]


def square(x: int, y: int = 100) -> tuple[int, int, int, int]:
    return (x, y, x + SIDE, y + SIDE)


def layout(i: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int], bool, bool]]:
    """(box, colour, in the truth, proposed) per square of frame i."""
    squares = [(square(10), RED, True, i % 4 != 0), (square(70), RED, True, True), (square(130), GREEN, True, True),
               (square(190), BLUE, False, True)]
    return squares + ([(square(250), RED, False, True)] if i % 2 == 0 else [])


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval")
    frames = root / "frames"
    frames.mkdir()
    images, annotations, boxes = [], [], {}
    for i in range(FRAMES):
        name = f"{i:03d}.jpg"
        picture = Image.new("RGB", (320, 240), (128, 128, 128))
        draw = ImageDraw.Draw(picture)
        draw.rectangle((4 + 6 * i, 10, 8 + 6 * i, 14), fill=(0, 0, 0))  # every frame's bytes differ
        for box, colour, _, _ in layout(i):
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        picture.save(frames / name, quality=95)
        images.append({"id": i + 1, "file_name": name, "width": 320, "height": 240})
        annotations += [{"id": len(annotations) + 1 + k, "image_id": i + 1, "category_id": 1,
                         "bbox": [box[0], box[1], SIDE, SIDE], "area": SIDE * SIDE, "iscrowd": 0}
                        for k, (box, _, truth, _) in enumerate(b for b in layout(i) if b[2])]
        boxes[name] = [[*box, 0.5 + 0.05 * k, "person"] for k, (box, _, _, proposed) in enumerate(layout(i)) if proposed]
        boxes[name].append([*square(150, 180), 0.2, "person"])  # under min_confidence: never verified, never kept
    (frames / "truth.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                   "categories": [{"id": 1, "name": "glasses"}]}))
    (root / "boxes.json").write_text(json.dumps(boxes))
    # The machine also captures through its filter, as a robot's would: evaluating it must not (issue 19 item 7).
    config = {"modules": [module("filter-stages", TEST_MODULES / "filter_stages"), module("autolabel-filter"),
                          module("media-camera")],
              "components": [camera("cam", source=str(frames))],
              "services": [
                  {"name": "data_manager", "api": "rdk:service:data_manager", "model": "rdk:builtin:builtin",
                   "attributes": {"capture_dir": str(root / "capture")}},
                  {"name": "proposer", "api": "rdk:service:vision", "model": "test:vision:scripted-proposer",
                   "attributes": {"frames": str(frames), "boxes": str(root / "boxes.json")}},
                  {"name": "vlm", "api": "rdk:service:vision", "model": "test:vision:colour-verifier",
                   "attributes": {"batch": "verify"}},
                  {"name": "labeler", "api": "rdk:service:vision", "model": "labelsieve:vision:autolabel-filter",
                   "attributes": {"detector": "proposer", "verifier": "vlm", "rules": RULES, "camera_name": "cam"},
                   "service_configs": [{"type": "data_manager", "attributes": {"capture_methods": [
                       {"method": "CaptureAllFromCamera", "capture_frequency_hz": 20,
                        "additional_params": {"camera_name": "cam"}}]}}]}]}
    (root / "machine.json").write_text(json.dumps(config))
    return {"root": root, "config": root / "machine.json", "truth": frames / "truth.json"}


def expected() -> dict[str, Any]:
    """The report's numbers, counted from the layout and what each stand-in answers."""
    squares = [s for i in range(FRAMES) for s in layout(i)]
    proposed = [s for s in squares if s[3]]
    truth = sum(s[2] for s in squares)
    kept = [s for s in proposed if s[1] == RED]  # the verifier says yes to red, and only to red
    return {"proposer": {"tp": sum(s[2] for s in proposed), "fp": sum(not s[2] for s in proposed)},
            "two_stage": {"tp": sum(s[2] for s in kept), "fp": sum(not s[2] for s in kept)}, "truth": truth,
            "confusion": {"positive": {"yes": sum(s[2] and s[1] == RED for s in proposed), "no": 0,
                                       "unsure": sum(s[2] and s[1] == GREEN for s in proposed)},
                          "negative": {"yes": sum(not s[2] and s[1] == RED for s in proposed),
                                       "no": sum(s[1] == BLUE for s in proposed), "unsure": 0}}}


def check(report: dict[str, Any]) -> None:
    want = expected()
    for stage in ("proposer", "two_stage"):
        got = report["classes"]["glasses"][stage]
        tp, fp = want[stage]["tp"], want[stage]["fp"]
        assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, want["truth"] - tp)
        assert got["precision"] == pytest.approx(tp / (tp + fp)) and got["recall"] == pytest.approx(tp / want["truth"])
    assert report["verifier_confusion"] == want["confusion"]
    assert report["frames"] == FRAMES and report["outcomes"] == {"kept": FRAMES}
    # every frame's green glasses are left unsure: an ignore region, apart from every kept box
    assert report["ignore_regions"] == {"frames_kept": FRAMES, "frames_with_ignore_regions": FRAMES,
                                        "dropped_by_default": FRAMES, "filled_with_fill_ignore": FRAMES,
                                        "dropped_with_fill_ignore": 0}
    assert report["cost"]["proposer_calls_per_frame"] == 1.0
    assert report["cost"]["verifier_calls_per_frame"] == pytest.approx(len([s for i in range(FRAMES) for s in layout(i)
                                                                             if s[3]]) / FRAMES)


def test_eval_reports_what_the_stage_error_rates_imply(scene: dict[str, Any], tmp_path: Path) -> None:
    report = asyncio.run(evaluate(scene["config"], "labeler", scene["truth"], tmp_path / "out",
                                  data_dir=tmp_path / "data"))
    check(report)
    assert not [p for p in (scene["root"] / "capture").rglob("*") if p.is_file()]  # evaluating never captures
    # the same in rates: per frame 2 red glasses (1 frame in 4 loses one to the proposer), 1 green glasses,
    # and a red decoy every other frame
    miss, decoy = 1 / 4, 1 / 2
    two = report["classes"]["glasses"]["two_stage"]
    assert two["precision"] == pytest.approx((2 - miss) / (2 - miss + decoy))
    assert two["recall"] == pytest.approx((2 - miss) / 3)
    assert report == json.loads((tmp_path / "out" / "report.json").read_text())
    # the sweep, offline: at the configured threshold it is the run itself; under it the verifier was never asked
    at = {(r["min_confidence"], r["verifier_confidence"]): r for r in report["sweep"]}
    assert at[(0.3, 0.0)]["two_stage"] == report["classes"]["glasses"]["two_stage"]
    assert at[(0.1, 0.0)]["two_stage"] is None and at[(0.1, 0.0)]["proposer"]["fp"] == expected()["proposer"]["fp"] + FRAMES
    assert at[(0.9, 0.0)]["proposer"]["tp"] == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == two["fp"] + two["fn"]
    assert page.count('<img src="data:image/png;base64,') == 2


def test_eval_command_prints_the_summary(scene: dict[str, Any], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "labelsieve", "eval", str(scene["config"]), "--filter", "labeler",
                           "--truth", str(scene["truth"]), "--out", str(tmp_path / "out"), "--data-dir",
                           str(tmp_path / "data")], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert "glasses" in done.stdout and (tmp_path / "out" / "report.html").is_file()


def test_eval_names_a_missing_filter(scene: dict[str, Any], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "labelsieve", "eval", str(scene["config"]), "--filter", "nope",
                           "--truth", str(scene["truth"]), "--out", str(tmp_path / "out")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no service named 'nope'" in done.stderr and "labeler" in done.stderr


def test_a_truth_file_naming_absent_images_is_refused(scene: dict[str, Any], tmp_path: Path) -> None:
    coco = json.loads(scene["truth"].read_text())
    coco["images"].append({"id": 99, "file_name": "gone.jpg", "width": 320, "height": 240})
    (tmp_path / "truth.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match="1 image\\(s\\) not found .* 'gone.jpg'; pass --images DIR"):
        load_coco(tmp_path / "truth.json", scene["truth"].parent)
    assert len(load_coco(scene["truth"]).images) == FRAMES


def test_eval_reads_the_filter_as_the_runtime_does(scene: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`${environment.X}` is expanded as in a run (it was read raw), and a resource that is no filter is named as such."""
    from labelsieve.eval.stages import filter_config

    config = json.loads(scene["config"].read_text())
    labeler = next(s for s in config["services"] if s["name"] == "labeler")
    labeler["attributes"]["detector"] = "${environment.EVAL_DETECTOR}"
    (tmp_path / "machine.json").write_text(json.dumps(config))
    monkeypatch.setenv("EVAL_DETECTOR", "proposer")
    assert filter_config(tmp_path / "machine.json", "labeler").detector == "proposer"
    with pytest.raises(InputError, match="'proposer' is a test:vision:scripted-proposer, not an auto-label filter"):
        filter_config(tmp_path / "machine.json", "proposer")


def test_eval_measures_the_filters_student(scene: dict[str, Any], tmp_path: Path) -> None:
    """A stand-in student that drops the first truth square and adds a ghost on the blue face, every frame: its precision
    and recall against the hand labels and against the teacher's labels, and its disagreements, are known exactly."""
    boxes = {f"{i:03d}.jpg": [[*square(70), 0.9, "glasses"], [*square(130), 0.9, "glasses"], [*square(190), 0.8, "glasses"]]
             for i in range(FRAMES)}
    (tmp_path / "student.json").write_text(json.dumps(boxes))
    config = json.loads(scene["config"].read_text())
    frames = next(s for s in config["services"] if s["name"] == "proposer")["attributes"]["frames"]
    config["services"].append({"name": "student", "api": "rdk:service:vision", "model": "test:vision:scripted-proposer",
                               "attributes": {"frames": frames, "boxes": str(tmp_path / "student.json")}})
    next(s for s in config["services"] if s["name"] == "labeler")["attributes"]["student"] = "student"
    (tmp_path / "machine.json").write_text(json.dumps(config))

    report = asyncio.run(evaluate(tmp_path / "machine.json", "labeler", scene["truth"], tmp_path / "out",
                                  data_dir=tmp_path / "data"))
    student = report["student"]
    assert student["service"] == "student" and student["frames"] == FRAMES
    # against the hand labels (3 red/green squares a frame): 2 found, the ghost false, the first square missed
    truth = student["against_truth"]["glasses"]
    assert (truth["tp"], truth["fp"], truth["fn"]) == (2 * FRAMES, FRAMES, FRAMES)
    # against the teacher (red at 10 unless the proposer missed it, red at 70, the red decoy on even frames)
    teacher = student["against_teacher"]["glasses"]
    missed_first = sum(1 for i in range(FRAMES) if i % 4 != 0)
    decoys = sum(1 for i in range(FRAMES) if i % 2 == 0)
    assert (teacher["tp"], teacher["fp"], teacher["fn"]) == (FRAMES, 2 * FRAMES, missed_first + decoys)
    assert student["frames_disagreeing_with_teacher"] == {"missed": FRAMES, "extra": FRAMES, "wrong_class": 0,
                                                          "any": FRAMES}
    assert report["classes"]["glasses"] == asyncio.run(evaluate(scene["config"], "labeler", scene["truth"],
                                                                tmp_path / "plain", data_dir=tmp_path / "data2")
                                                       )["classes"]["glasses"]  # the student changes no teacher number
