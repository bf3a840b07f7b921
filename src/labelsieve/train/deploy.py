"""Deploy a model directory to one machine (rewrite its config; the runtime applies the edit live) or to a fleet
(publish under a storage URL, then move the `current` pointer that every robot's fast detector polls).

Promotion gate: a model replaces the deployed one only if it has the same classes, in the same order, and scores no
worse on held-out data: both are scored on the val split of the dataset version the candidate was trained on (the
recorded number when a model was trained on that very version, else a fresh evaluation). `force` skips the gate.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labelsieve import images
from labelsieve.dataset import DatasetVersion, open_dataset
from labelsieve.detect.fast import FastDetectorConfig, load_model
from labelsieve.filter.student import compare
from labelsieve.errors import BackendUnavailable, InputError, PromotionRefused
from labelsieve.files import write_atomic
from labelsieve.fleet import MODEL_INFO, fetch_model, is_url, publish, read_pointer
from labelsieve.runtime.config import parse_config
from labelsieve.shipped import module_entry
from labelsieve.train.trainer import SCORE, held_out_score, load_model_info

__all__ = ["FAST_DETECTOR", "PromotionRefused", "config_lock", "deploy_to_config", "deploy_to_fleet", "promotion_gate",
           "teacher_disagreement"]

FAST_DETECTOR = "labelsieve:vision:fast-detector"


def promotion_gate(candidate: Path, deployed: Path | None, force: bool = False, teacher: bool = False) -> str:
    """The sentence that decided; raises PromotionRefused (unless `force`) naming the number that refused. With
    `teacher`, the candidate must also disagree with the teacher on fewer held-out frames than the deployed model."""
    if deployed is None:
        return "nothing deployed yet: no comparison to make"
    try:
        decision = _compare(candidate, deployed, teacher)
    except PromotionRefused as exc:
        if not force:
            raise
        return f"forced, although {exc}"
    return f"forced ({decision})" if force else decision


def _compare(candidate: Path, deployed: Path, teacher: bool) -> str:
    new, old = load_model_info(candidate), load_model_info(deployed)
    if new["classes"] != old["classes"]:
        raise PromotionRefused(f"the classes differ: deployed {old['classes']}, candidate {new['classes']} "
                               "(a robot's consumers read class names; pass --force if the change is intended)")
    try:
        version = open_dataset(new["dataset"]["path"])
    except InputError as exc:
        raise PromotionRefused(f"cannot score both on held-out data: the candidate's dataset is not here ({exc})") from exc
    if version.id != new["dataset"]["id"]:
        raise PromotionRefused(f"the candidate's dataset at {version.path} is not the version it was trained on")
    new_score, old_score = held_out_score(candidate, version), held_out_score(deployed, version)
    where = f"{SCORE} on the val split of dataset {version.name} ({version.id[:12]})"
    if new_score < old_score:
        raise PromotionRefused(f"{where}: candidate {new_score:.4f} < deployed {old_score:.4f}")
    decided = f"{where}: candidate {new_score:.4f} >= deployed {old_score:.4f}"
    if not teacher:
        return decided
    new_rate, old_rate = teacher_disagreement(candidate, version), teacher_disagreement(deployed, version)
    where = f"frames disagreeing with the teacher's labels on the val split of {version.name}"
    if not new_rate < old_rate:
        raise PromotionRefused(f"{where}: candidate {new_rate:.3f} is not below deployed {old_rate:.3f}")
    return f"{decided}; {where}: candidate {new_rate:.3f} < deployed {old_rate:.3f}"


def teacher_disagreement(model_dir: Path, version: DatasetVersion) -> float:
    """The share of `version`'s val images (their labels are the teacher's) on which the model, run as the fast
    detector serves it, misses a box, adds one or names one wrongly at IoU 0.5 (active learning's `compare`)."""
    cfg = FastDetectorConfig.parse("promotion gate", {"model_path": str(model_dir)})
    model = load_model(model_dir, "cpu")
    frames = version.split("val")
    if not frames:
        raise PromotionRefused(f"{version.path}: the val split is empty, so nothing tells the models apart")
    wrong = 0
    for labels in frames:
        image = images.decode((version.path / labels.metadata["file_name"]).read_bytes(), where=labels.metadata["file_name"])
        wrong += bool(compare(model.detect(image, cfg.confidence, cfg.iou, cfg.max_detections), labels).kinds)
    return wrong / len(frames)


def _model_dir_of(path: Path) -> Path | None:
    for candidate in (path, path.parent):
        if (candidate / MODEL_INFO).is_file():
            return candidate
    return None


@contextlib.contextmanager
def config_lock(config: Path, timeout_s: float = 30.0) -> Iterator[None]:
    """`<config>.lock`, created exclusively as git creates `index.lock`, held around a read-modify-write of the config,
    so two deploys to one config at once both land. A lock older than any deploy is named, not silently broken."""
    lock = config.with_name(config.name + ".lock")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise InputError(f"{lock} is held by another deploy for over {timeout_s:.0f} s; if none is running, "
                                 "a crashed one left it: remove the file") from None
            time.sleep(0.02)  # another process holds it; there is no event to wait on across processes
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _read_machine(config: Path) -> dict[str, Any]:
    try:
        machine = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{config}: not JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); fix the file, "
                         "or check it with `labelsieve validate`") from None
    if not isinstance(machine, dict):
        raise InputError(f"{config}: a machine config is a JSON object, not {type(machine).__name__}")
    return machine


def _serves_fast_detector(machine: dict[str, Any], base: Path) -> bool:
    """Whether a module in the config runs the fast detector's shell or the all-models entry point."""
    for module in machine.get("modules", []):
        exe = (base / str(module.get("executable_path", ""))).resolve()
        if exe.name == "run.sh" and exe.parent.name in ("fast_detector", "modules"):
            return True
    return False


def _create_service(machine: dict[str, Any], service: str, base: Path) -> dict[str, Any]:
    """A fast-detector service with what it needs: the module serving it, and `camera_name` when there is one camera."""
    cameras = [c["name"] for c in machine.get("components", []) if str(c.get("api", "")).endswith(":camera")]
    resource: dict[str, Any] = {"name": service, "api": "rdk:service:vision", "model": FAST_DETECTOR,
                                "attributes": {"camera_name": cameras[0]} if len(cameras) == 1 else {}}
    machine.setdefault("services", []).append(resource)
    if not _serves_fast_detector(machine, base):
        machine.setdefault("modules", []).append(module_entry("fast_detector"))
    return resource


def deploy_to_config(model_dir: Path, config: Path, service: str, force: bool = False, create: bool = False,
                     teacher: bool = False) -> str:
    """Point fast-detector `service` in machine config `config` at `model_dir` (locked, validated, atomic rewrite); with
    `create`, add the service (and the module serving it) when the config has none of that name. Returns the decision."""
    load_model_info(model_dir)
    with config_lock(config):
        machine = _read_machine(config)
        found = [r for r in machine.get("services", []) + machine.get("components", []) if r.get("name") == service]
        if not found and not create:
            raise InputError(f"{config}: no service named {service!r} (--create adds one)")
        resource = found[0] if found else _create_service(machine, service, config.parent)
        if resource.get("model") != FAST_DETECTOR:
            raise InputError(f"{config}: {service!r} is a {resource.get('model')}, not a {FAST_DETECTOR}")
        attributes = resource.setdefault("attributes", {})
        current = attributes.get("model_path")
        deployed = _model_dir_of(config.parent / current) if current and not is_url(current) else None
        decision = promotion_gate(model_dir, deployed, force, teacher)
        attributes["model_path"] = str(model_dir.resolve())
        if not _serves_fast_detector(machine, config.parent):
            raise InputError(f"{config}: no module serves {FAST_DETECTOR}; add the fast_detector module, or deploy "
                             "with --create to a new service name")
        # Everything `validate` checks without starting a module; ${environment.X} is the robot's business, not ours.
        parse_config(machine, config.resolve(), unset_env="collect")
        FastDetectorConfig.parse(f"resource '{service}'", attributes)
        write_atomic(config, json.dumps(machine, indent=2) + "\n")
    return decision


def deploy_to_fleet(model_dir: Path, fleet: str, force: bool = False, cache: Path | None = None,
                    teacher: bool = False) -> tuple[str, str]:
    """Publish `model_dir` under `fleet` and move its `current` pointer. Returns (model URL, decision)."""
    info = load_model_info(model_dir)
    pointer = read_pointer(fleet)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        try:
            deployed = fetch_model(fleet, str(pointer["model"]), Path(scratch)) if pointer else None
        except BackendUnavailable as exc:  # e.g. published before manifests: `force` republishes without comparing
            if not force:
                raise
            decision = f"forced, without a comparison: {exc}"
        else:
            decision = promotion_gate(model_dir, deployed, force, teacher)
    return publish(model_dir, fleet, str(info["id"])), decision
