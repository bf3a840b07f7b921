"""A version as one COCO file whose annotations carry each box's provenance, for tools that show label fields (FiftyOne
loads them with `extra_attrs=True`): `score` and `agreement`, the verifier's `answer`, `verifier_confidence` and
`question`, and the whole `provenance` record. The build's own `annotations/instances_<split>.json` stay plain COCO."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from labelsieve.dataset.build import DatasetVersion
from labelsieve.dataset.formats import SPLITS
from labelsieve.files import write_atomic

__all__ = ["export_coco"]

_FIELDS = ("agreement", "answer", "verifier_confidence", "question")


def export_coco(version: DatasetVersion, out: Path) -> Path:
    """`OUT/coco.json`: every image of the version (`file_name` relative to the version folder, `split` per image), every
    labelled box with its provenance fields; class ids are the frozen order + 1."""
    by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (version.path / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["class"] is not None:  # a box a review deleted stays in the manifest, not in the labels
            by_image[row["image"]].append(row)
    ids = {name: i + 1 for i, name in enumerate(version.classes)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for split in SPLITS:
        coco = json.loads((version.path / "annotations" / f"instances_{split}.json").read_text())
        for image in coco["images"]:
            width, height = image["width"], image["height"]
            images.append({**image, "id": len(images) + 1, "split": split})
            for row in by_image[image["file_name"]]:
                x0, y0, x1, y1 = row["box"]
                prov = row.get("provenance") or {}
                w, h = (x1 - x0) * width, (y1 - y0) * height
                annotations.append({
                    "id": len(annotations) + 1, "image_id": len(images), "category_id": ids[row["class"]],
                    "bbox": [round(x0 * width, 2), round(y0 * height, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2), "iscrowd": 0, "score": row["confidence"],
                    **{key: prov.get(key) for key in _FIELDS}, "provenance": prov})
    out.mkdir(parents=True, exist_ok=True)
    info = {"description": f"labelsieve {version.path.parent.name} {version.name}", "version": version.name,
            "dataset_id": version.id, "images_root": str(version.path.resolve())}
    write_atomic(out / "coco.json", json.dumps({"info": info, "images": images, "annotations": annotations,
                                                "categories": [{"id": i, "name": n, "supercategory": "none"}
                                                               for n, i in ids.items()]}))
    return out / "coco.json"
