"""COCO detection JSON: the one reader (eval's hand-labelled truth, a version's own exports for review) and the one writer
(a dataset version's `annotations/instances_<split>.json`). Each image is a `Detections` whose `metadata` holds its
`file_name`, `width` and `height`; `bbox` is pixel x, y, width, height; category ids are 1-based on writing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelsieve.detections import Detections
from labelsieve.errors import InputError

__all__ = ["PROVENANCE_FIELDS", "as_coco", "from_coco"]


#: Provenance keys `as_coco(..., provenance=True)` lifts onto each annotation, for tools that show label fields.
PROVENANCE_FIELDS = ("agreement", "answer", "verifier_confidence", "question")


def as_coco(frames: Sequence[Detections], classes: Sequence[str], *, provenance: bool = False) -> dict[str, Any]:
    """With `provenance`, each annotation also carries its box's `provenance` record and the `PROVENANCE_FIELDS` from it
    (FiftyOne loads them with `extra_attrs=True`), and an image its `split` where its metadata has one."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ids = {name: i + 1 for i, name in enumerate(classes)}
    for image_id, dets in enumerate(frames, start=1):
        meta = dets.metadata
        images.append({"id": image_id, "file_name": meta["file_name"], "width": meta["width"], "height": meta["height"],
                       **({"split": meta["split"]} if provenance and "split" in meta else {})})
        for ((x0, y0, x1, y1), confidence, name), record in zip(dets, dets.provenance):
            w, h = float(x1 - x0), float(y1 - y0)
            fields = {**{k: (record or {}).get(k) for k in PROVENANCE_FIELDS}, "provenance": record or {}} \
                if provenance else {}
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[name],
                                "bbox": [round(float(x0), 2), round(float(y0), 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": 0, "score": confidence, **fields})
    categories = [{"id": ids[name], "name": name, "supercategory": "none"} for name in classes]
    return {"images": images, "annotations": annotations, "categories": categories}


def from_coco(raw: Any, where: str) -> tuple[list[Detections], tuple[str, ...]]:
    """(one `Detections` per image, in image id order; the categories). An annotation naming an unknown image or
    category is an error: a silently smaller sample would mislead. A box without `score` has confidence 1."""
    try:
        categories = {int(c["id"]): str(c["name"]) for c in raw["categories"]}
        files = {int(i["id"]): i for i in raw["images"]}
        boxes: dict[int, list[tuple[float, float, float, float, float, str]]] = {i: [] for i in files}
        for a in raw.get("annotations", []):
            x, y, w, h = (float(v) for v in a["bbox"])
            if a["image_id"] not in files or a["category_id"] not in categories:
                raise InputError(f"{where}: annotation {a.get('id')} names an unknown image or category")
            boxes[int(a["image_id"])].append((x, y, x + w, y + h, float(a.get("score", 1.0)),
                                              categories[int(a["category_id"])]))
        classes = tuple(dict.fromkeys(categories.values()))
        frames = [Detections(np.array([b[:4] for b in boxes[i]], np.float32).reshape(-1, 4), np.array([b[4] for b in boxes[i]], np.float32),
                             np.array([b[5] for b in boxes[i]], np.str_), classes=classes,
                             metadata={"file_name": str(image["file_name"]), "width": int(image.get("width") or 0),
                                       "height": int(image.get("height") or 0)})
                  for i, image in sorted(files.items())]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not a COCO detection file ({type(exc).__name__}: {exc})") from exc
    return frames, classes
