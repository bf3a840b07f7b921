"""The fast detector's model source from plain Python (no Viam): a watched model swaps to a new file, and a model that
loads but cannot answer a frame, or answers with other classes than it names, never replaces the serving one."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support.onnx_models import yolo_onnx

from labelsieve.detect.fast import FastModel, load_model
from labelsieve.detect.source import WatchedModel
from labelsieve.errors import ModelError

WAIT = 60  # seconds before a test gives up on an event that should come within a few polls


def replace(folder: Path, names: list[str], **broken: Any) -> None:
    """A new model.onnx in `folder`, written aside and renamed in (as a careful copy would), model.json first."""
    staged = yolo_onnx(folder / "staging" / "model.onnx", names, **broken)
    if "model_json" in broken:
        (folder / "model.json").write_text(json.dumps(broken["model_json"]))
    staged.replace(folder / "model.onnx")


def watch(folder: Path) -> tuple[WatchedModel, queue.Queue[tuple[str, FastModel]], queue.Queue[str]]:
    swaps: queue.Queue[tuple[str, FastModel]] = queue.Queue()
    problems: queue.Queue[str] = queue.Queue()
    watched = WatchedModel(str(folder), device="cpu", poll_interval_s=0.05, name="script")
    watched.on_swap(lambda version, model: swaps.put((version, model)))
    watched.on_problem(problems.put)
    return watched.start(), swaps, problems


def frame() -> Image.Image:
    return Image.new("RGB", (64, 64), "grey")


def test_watched_model_from_plain_python_swaps_to_a_new_file(tmp_path: Path) -> None:
    replace(tmp_path, ["cat"])
    watched, swaps, _ = watch(tmp_path)
    try:
        version, first = swaps.get(timeout=WAIT)
        assert watched.current() == (version, first) and first.names == ("cat",)
        assert list(first.detect(frame(), 0.25, 0.45, 10).class_name) == ["cat"]
        replace(tmp_path, ["dog"])
        new_version, second = swaps.get(timeout=WAIT)
        assert new_version != version and watched.current() == (new_version, second)
        assert list(second.detect(frame(), 0.25, 0.45, 10).class_name) == ["dog"]
    finally:
        watched.stop()


BROKEN = {
    "an identity graph": ({"identity": True}, "answers a frame with shape (1, 3, 32, 32)"),
    "a uint8 input": ({"uint8_input": True}, "its input is a tensor(uint8)"),
    "3 classes, a 1-class head": ({"classes_in_head": 1}, "gives (1, 7, anchors)"),
    "model.json with other classes": ({"model_json": {"classes": ["a", "b", "c"]}}, "model.json names the classes"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_model_that_cannot_serve_is_refused_and_the_old_one_keeps_serving(case: str, tmp_path: Path) -> None:
    broken, message = BROKEN[case]
    names = ["a", "b", "c"] if "classes_in_head" in broken else ["a"]
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(yolo_onnx(tmp_path / "alone" / "model.onnx", names, **broken).parent, "cpu")
    live = tmp_path / "live"
    replace(live, ["a"])
    watched, swaps, problems = watch(live)
    try:
        serving = swaps.get(timeout=WAIT)
        replace(live, names, **broken)
        assert message in problems.get(timeout=WAIT)
        assert watched.current() == serving
        assert list(serving[1].detect(frame(), 0.25, 0.45, 10).class_name) == ["a"]
        (live / "model.json").unlink(missing_ok=True)
        replace(live, ["a"], boxes=((8, 8, 4, 4, 0, 0.8),))  # a good model again: served, with no second complaint
        version, model = swaps.get(timeout=WAIT)
        assert watched.current() == (version, model) and model is not serving[1]
        assert problems.empty()
    finally:
        watched.stop()
