"""Deploy a model directory to one machine (rewrite its config; the runtime applies the edit live) or to a fleet
(publish under a storage URL, then move the `current` pointer that every robot's fast detector polls).

Promotion gate: a model replaces the deployed one only if it has the same classes, in the same order, and scores no
worse on held-out data: both are scored on the val split of the dataset version the candidate was trained on (the
recorded number when a model was trained on that very version, else a fresh evaluation). `force` skips the gate.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from labelsieve.dataset import open_dataset
from labelsieve.errors import BackendUnavailable, InputError, PromotionRefused
from labelsieve.files import write_atomic
from labelsieve.fleet import MODEL_INFO, fetch_model, is_url, publish, read_pointer
from labelsieve.train.trainer import SCORE, held_out_score, load_model_info

__all__ = ["FAST_DETECTOR", "PromotionRefused", "deploy_to_config", "deploy_to_fleet", "promotion_gate"]

FAST_DETECTOR = "labelsieve:vision:fast-detector"


def promotion_gate(candidate: Path, deployed: Path | None, force: bool = False) -> str:
    """The sentence that decided; raises PromotionRefused (unless `force`) naming the number that refused."""
    if deployed is None:
        return "nothing deployed yet: no comparison to make"
    try:
        decision = _compare(candidate, deployed)
    except PromotionRefused as exc:
        if not force:
            raise
        return f"forced, although {exc}"
    return f"forced ({decision})" if force else decision


def _compare(candidate: Path, deployed: Path) -> str:
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
    return f"{where}: candidate {new_score:.4f} >= deployed {old_score:.4f}"


def _model_dir_of(path: Path) -> Path | None:
    for candidate in (path, path.parent):
        if (candidate / MODEL_INFO).is_file():
            return candidate
    return None


def deploy_to_config(model_dir: Path, config: Path, service: str, force: bool = False, create: bool = False) -> str:
    """Point fast-detector `service` in machine config `config` at `model_dir` (atomic rewrite); with `create`, add the
    service when the config has none of that name. Returns the decision."""
    load_model_info(model_dir)
    machine = json.loads(config.read_text())
    found = [r for r in machine.get("services", []) + machine.get("components", []) if r.get("name") == service]
    if not found and create:
        found = [{"name": service, "api": "rdk:service:vision", "model": FAST_DETECTOR, "attributes": {}}]
        machine.setdefault("services", []).append(found[0])
    if not found:
        raise InputError(f"{config}: no service named {service!r} (--create adds one)")
    resource = found[0]
    if resource.get("model") != FAST_DETECTOR:
        raise InputError(f"{config}: {service!r} is a {resource.get('model')}, not a {FAST_DETECTOR}")
    attributes = resource.setdefault("attributes", {})
    current = attributes.get("model_path")
    deployed = _model_dir_of(config.parent / current) if current and not is_url(current) else None
    decision = promotion_gate(model_dir, deployed, force)
    attributes["model_path"] = str(model_dir.resolve())
    write_atomic(config, json.dumps(machine, indent=2) + "\n")
    return decision


def deploy_to_fleet(model_dir: Path, fleet: str, force: bool = False, cache: Path | None = None) -> tuple[str, str]:
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
            decision = promotion_gate(model_dir, deployed, force)
    return publish(model_dir, fleet, str(info["id"])), decision
