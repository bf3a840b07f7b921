"""Fleet storage on a folder: a published model is immutable, and a robot caches only what matches the manifest, so a
damaged upload leaves the model it serves in place."""

from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import pytest
from support.onnx_models import yolo_onnx

from labelsieve.detect.fast import FastModel
from labelsieve.detect.source import WatchedModel
from labelsieve.errors import BackendUnavailable, ModelError
from labelsieve.fleet import MANIFEST, fetch_model, publish, read_pointer

WAIT = 60


def model_dir(folder: Path, model_id: str, score: float = 0.9) -> Path:
    yolo_onnx(folder / "model.onnx", ["a"], boxes=((16, 16, 8, 8, 0, score),),
              model_json={"id": model_id, "classes": ["a"]})
    return folder


def test_publishing_an_id_again_uploads_nothing_and_other_content_is_refused(tmp_path: Path) -> None:
    fleet = (tmp_path / "fleet").as_uri()
    first = model_dir(tmp_path / "first", "m1")
    publish(first, fleet, "m1")
    stored = tmp_path / "fleet" / "models" / "m1"
    before = {p.name: p.stat().st_mtime_ns for p in stored.iterdir()}
    publish(first, fleet, "m1")  # the same content: nothing rewritten under a robot that may be fetching it
    assert {p.name: p.stat().st_mtime_ns for p in stored.iterdir()} == before
    assert json.loads((stored / MANIFEST).read_text())["model.onnx"]["size"] == (first / "model.onnx").stat().st_size
    other = model_dir(tmp_path / "other", "m1", score=0.5)
    with pytest.raises(ModelError, match="m1 is already published with other content"):
        publish(other, fleet, "m1")
    assert (stored / "model.onnx").read_bytes() == (first / "model.onnx").read_bytes()
    assert read_pointer(fleet) == {"model": "m1"}


def test_a_robot_caches_only_what_matches_the_manifest_and_keeps_serving(tmp_path: Path) -> None:
    fleet = (tmp_path / "fleet").as_uri()
    publish(model_dir(tmp_path / "first", "m1"), fleet, "m1")
    swaps: queue.Queue[tuple[str, FastModel]] = queue.Queue()
    problems: queue.Queue[str] = queue.Queue()
    watched = WatchedModel(fleet, device="cpu", poll_interval_s=0.05, cache=tmp_path / "cache")
    watched.on_swap(lambda version, model: swaps.put((version, model)))
    watched.on_problem(problems.put)
    watched.start()
    try:
        assert swaps.get(timeout=WAIT)[0] == "m1"
        second = model_dir(tmp_path / "second", "m2", score=0.5)
        publish(second, fleet, "m2")
        stored = tmp_path / "fleet" / "models" / "m2" / "model.onnx"
        stored.write_bytes(stored.read_bytes()[:100])  # torn in storage, as a copy over it would leave it
        assert "model.onnx does not match its manifest" in problems.get(timeout=WAIT)
        assert watched.current()[0] == "m1" and not (tmp_path / "cache" / "models" / "m2").exists()
        with pytest.raises(BackendUnavailable, match="not cached"):
            fetch_model(fleet, "m2", tmp_path / "other-robot")
        assert [p.name for p in (tmp_path / "other-robot").iterdir()] == []
        shutil.copy(second / "model.onnx", stored)  # repaired: the robot takes it on its next poll
        while (served := swaps.get(timeout=WAIT))[0] != "m2":  # m1 again first: the first load, re-keyed by its version
            pass
        version, model = served
        assert model.info["id"] == "m2" and watched.current() == (version, model)
    finally:
        watched.stop()


def test_a_fleet_published_before_manifests_is_republished_with_force(trained_model: Path, tmp_path: Path) -> None:
    from labelsieve.train.deploy import deploy_to_fleet

    fleet = (tmp_path / "fleet").as_uri()
    model_id = json.loads((trained_model / "model.json").read_text())["id"]
    publish(trained_model, fleet, model_id)
    (tmp_path / "fleet" / "models" / model_id / MANIFEST).unlink()  # as an older labelsieve left it
    with pytest.raises(BackendUnavailable, match="no manifest.json"):
        deploy_to_fleet(trained_model, fleet, cache=tmp_path)
    url, decision = deploy_to_fleet(trained_model, fleet, force=True, cache=tmp_path)
    assert decision.startswith("forced, without a comparison") and url.endswith(model_id)
    assert fetch_model(fleet, model_id, tmp_path / "robot").name == model_id  # complete and verified again
