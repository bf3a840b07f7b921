"""The round trip with Label Studio: a version's images as tasks with its boxes as predictions, and a Label Studio JSON
export back as the dataset's next version.

Images are referenced through Label Studio's local-files serving (`/data/local-files/?d=PATH`, PATH relative to
`LOCAL_FILES_DOCUMENT_ROOT`), so nothing is uploaded: start Label Studio with `LOCAL_FILES_SERVING_ENABLED=true` and
the same `LOCAL_FILES_DOCUMENT_ROOT` the export used, and add a Local Files source storage for the version's `images`
folder (it grants access; it needs no sync). Each prediction region's id is `box<N>` (the box's manifest row), which Label
Studio keeps when a reviewer starts from the prediction: on the way back a region with such an id is that box (accepted,
moved, relabelled), a missing one was deleted, any other region was drawn; a task nobody annotated keeps its boxes.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from labelsieve.dataset import DatasetVersion, open_dataset, versions
from labelsieve.errors import InputError
from labelsieve.files import write_atomic
from labelsieve.review.session import Review

__all__ = ["export_label_studio", "import_label_studio", "label_config"]

_REGION = "box"


def label_config(classes: tuple[str, ...]) -> str:
    """The labeling interface: the image, and a rectangle tool with every class the rules can produce."""
    labels = "".join(f"\n    <Label value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="image" value="$image" zoom="true" zoomControl="true"/>\n'
            f'  <RectangleLabels name="label" toName="image">{labels}\n  </RectangleLabels>\n</View>\n')


def export_label_studio(version: DatasetVersion, out: Path) -> Path:
    """`OUT/tasks.json` (one task per image, boxes as predictions with `model_version` = the version and `score` = the
    agreement) and `OUT/label_config.xml`; the document root is `$LOCAL_FILES_DOCUMENT_ROOT` (default /)."""
    root = Path(os.environ.get("LOCAL_FILES_DOCUMENT_ROOT") or "/").resolve()
    images = version.path.resolve() / "images"
    if not images.is_relative_to(root):
        raise InputError(f"{images} is not under LOCAL_FILES_DOCUMENT_ROOT={root}: Label Studio could not serve it")
    review = Review(version, persist=False)
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(review.rows):
        by_image[row["image"]].append(i)
    tasks = []
    for image, (width, height) in sorted(review.image_sizes().items()):
        results, scores = [], []
        for i in by_image.get(image, ()):
            row = review.rows[i]
            x0, y0, x1, y1 = row["box"]
            score = float((row.get("provenance") or {}).get("agreement", row.get("confidence", 1.0)))
            scores.append(score)
            results.append({"id": f"{_REGION}{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                            "original_width": width, "original_height": height, "image_rotation": 0, "score": score,
                            "value": {"x": x0 * 100, "y": y0 * 100, "width": (x1 - x0) * 100, "height": (y1 - y0) * 100,
                                      "rotation": 0, "rectanglelabels": [row["class"]]}})
        path = (version.path.resolve() / image).relative_to(root)
        tasks.append({"data": {"image": f"/data/local-files/?d={quote(str(path))}", "labelsieve_image": image,
                               "labelsieve_version": version.id},
                      "predictions": [{"model_version": version.name, "score": min(scores, default=1.0),
                                       "result": results}]})
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "tasks.json", json.dumps(tasks, indent=1))
    write_atomic(out / "label_config.xml", label_config(review.classes))
    return out


def _annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's latest annotation that was submitted, not skipped."""
    done = [a for a in task.get("annotations") or () if not a.get("was_cancelled")]
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0), default=None)


def _xyxy(region: dict[str, Any]) -> list[float]:
    v = region["value"]
    if v.get("rotation"):
        raise InputError(f"region {region.get('id')}: a rotated box ({v['rotation']} degrees) has no axis-aligned label")
    x, y, w, h = (float(v[k]) / 100 for k in ("x", "y", "width", "height"))
    return [x, y, x + w, y + h]


def import_label_studio(export: Path, dataset: str | Path) -> DatasetVersion:
    """The dataset's next version from a Label Studio JSON export of tasks made by `export_label_studio` (of the
    dataset's latest version); every change is recorded in provenance with `review.via` = "label-studio"."""
    version = open_dataset(dataset)
    latest = versions(version.path.parent)
    if not latest or latest[-1].path != version.path:
        raise InputError(f"{dataset}: import into the dataset's latest version, so that the next one follows it")
    try:
        tasks = json.loads(Path(export).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{export}: not a Label Studio JSON export: {exc}") from exc
    if not isinstance(tasks, list):
        raise InputError(f"{export}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    review = Review(version, persist=False)
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(review.rows):
        by_image[row["image"]].append(i)
    changes: list[dict[str, Any]] = []
    reviewers = set()
    for task in tasks:
        data = task.get("data") or {}
        if data.get("labelsieve_version") != version.id:
            raise InputError(f"{export}: task {task.get('id')} was exported from another version "
                             f"({str(data.get('labelsieve_version'))[:12]}), not {version.name} ({version.id[:12]})")
        annotation = _annotation(task)
        if annotation is None:
            continue  # nobody reviewed it: its boxes stay as they are
        who = annotation.get("completed_by")
        reviewers.add(str(who.get("email") if isinstance(who, dict) else who))
        image, seen = data["labelsieve_image"], set()
        for region in annotation.get("result") or ():
            if region.get("type") != "rectanglelabels":
                continue
            label, xyxy, rid = region["value"]["rectanglelabels"][0], _xyxy(region), str(region.get("id"))
            box = int(rid[len(_REGION):]) if rid.startswith(_REGION) and rid[len(_REGION):].isdigit() else None
            if box is None or box not in by_image[image]:
                changes.append({"decision": "add", "class": label, "xyxy": xyxy, "image": image})
                continue
            seen.add(box)
            row = review.rows[box]
            moved = max(abs(a - b) for a, b in zip(xyxy, row["box"])) >= 1e-4
            changes.append({"box": box, "decision": "move" if moved else "relabel" if label != row["class"] else "accept",
                            "class": None if label == row["class"] else label, "xyxy": xyxy if moved else None})
        changes += [{"box": box, "decision": "reject"} for box in by_image[image] if box not in seen]
    review.decide_many(changes)
    return review.finish(", ".join(sorted(reviewers)), via="label-studio")
