"""The COCO export in FiftyOne: agreement, the verifier's answer and the provenance arrive as label fields.

FiftyOne is not a labelsieve dependency and its install is large (about 1 GB and 8 minutes here), so CI does not install it:
the test runs where a venv with `fiftyone` exists (`FIFTYONE_VENV`, default `.venv-fiftyone` beside the repo's `.venv`)
and its database starts; otherwise it skips, saying which of the two is missing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.review import review_dataset

from labelsieve.dataset import open_dataset
from labelsieve.dataset.export_coco import export_coco

VENV = Path(os.environ.get("FIFTYONE_VENV") or Path(__file__).resolve().parents[2] / ".venv-fiftyone")
LOAD = """
import json, sys
import fiftyone as fo
from fiftyone.core.config import FiftyOneConfigError
try:
    dataset = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=sys.argv[2],
                                  labels_path=sys.argv[1], extra_attrs=True, label_field="labels")
except FiftyOneConfigError as exc:
    print(json.dumps({"no_database": str(exc)}))
    raise SystemExit(0)
print(json.dumps([[sample.filepath, [{"label": d.label, "bounding_box": d.bounding_box, "agreement": d["agreement"],
                   "answer": d["answer"], "provenance": d["provenance"]} for d in sample["labels"].detections]
                   if sample["labels"] else []] for sample in dataset]))
"""


def test_coco_export_loads_in_fiftyone_with_provenance_fields(tmp_path: Path) -> None:
    if not (VENV / "bin" / "python").exists():
        pytest.skip(f"no FiftyOne venv at {VENV} (python3.11 -m venv {VENV} && {VENV}/bin/pip install fiftyone; "
                    "about 1 GB, so CI does not)")
    version = open_dataset(review_dataset(tmp_path))
    coco = export_coco(version, tmp_path / "coco")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
           "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_DATABASE_ADMIN": "true"}
    run = subprocess.run([str(VENV / "bin" / "python"), "-c", LOAD, str(coco), str(version.path)], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    if isinstance(loaded, dict):
        pytest.skip(f"FiftyOne's database does not start on this machine: {loaded['no_database'][:200]}")
    rows = [json.loads(line) for line in (version.path / "manifest.jsonl").read_text().splitlines()]
    want = {(str(version.path / r["image"]), r["class"]): r for r in rows}
    got = [(path, d) for path, detections in loaded for d in detections]
    assert len(got) == len(rows)
    for path, d in got:
        row = want[(path, d["label"])]
        assert d["agreement"] == row["provenance"]["agreement"] and d["answer"] == row["provenance"]["answer"]
        assert d["provenance"] == row["provenance"]


def test_coco_export_carries_each_boxes_provenance(tmp_path: Path) -> None:
    """What FiftyOne reads, checked where it is not installed: every labelled box, in pixels, with its provenance."""
    version = open_dataset(review_dataset(tmp_path))
    coco = json.loads(export_coco(version, tmp_path / "coco").read_text())
    assert [c["name"] for c in coco["categories"]] == list(version.classes)
    images = {image["id"]: image for image in coco["images"]}
    rows = [json.loads(line) for line in (version.path / "manifest.jsonl").read_text().splitlines()]
    got = sorted((images[a["image_id"]]["file_name"], a["bbox"], a["agreement"], a["answer"], a["provenance"]["question"])
                 for a in coco["annotations"])
    want = sorted((r["image"], [round(r["box"][0] * 64, 2), round(r["box"][1] * 64, 2),
                                round((r["box"][2] - r["box"][0]) * 64, 2), round((r["box"][3] - r["box"][1]) * 64, 2)],
                   r["provenance"]["agreement"], r["provenance"]["answer"], r["provenance"]["question"]) for r in rows)
    assert got == want and all((version.path / image["file_name"]).is_file() for image in coco["images"])
