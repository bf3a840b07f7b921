"""A version as one COCO file whose annotations carry each box's provenance, for tools that show label fields (FiftyOne
loads them with `extra_attrs=True`): `score` and `agreement`, the verifier's `answer`, `verifier_confidence` and
`question`, and the whole `provenance` record. The build's own `annotations/instances_<split>.json` stay plain COCO."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from labelsieve.dataset.build import DatasetVersion
from labelsieve.dataset.formats import SPLITS, as_coco, from_manifest
from labelsieve.files import write_atomic

__all__ = ["export_coco"]


def export_coco(version: DatasetVersion, out: Path) -> Path:
    """`OUT/coco.json`: every image of the version (`file_name` relative to the version folder, `split` per image), every
    labelled box with its provenance fields; class ids are the frozen order + 1."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (version.path / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["class"] is not None:  # a box a review deleted stays in the manifest, not in the labels
            rows[row["image"]].append(row)
    frames = []
    for split in SPLITS:
        for image in version.split(split):
            meta = image.metadata
            frames.append(from_manifest(rows[meta["file_name"]], meta["width"], meta["height"]).with_metadata(
                file_name=meta["file_name"], width=meta["width"], height=meta["height"], split=split))
    coco = as_coco(frames, version.classes, provenance=True)
    coco["info"] = {"description": f"labelsieve {version.path.parent.name} {version.name}", "version": version.name,
                    "dataset_id": version.id, "images_root": str(version.path.resolve())}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "coco.json", json.dumps(coco))
    return out / "coco.json"
