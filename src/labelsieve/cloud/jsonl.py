"""Viam's dataset format, both ways: what `viam dataset export` writes (`dataset.jsonl` + `data/`) read as capture files,
and a dataset version written as one, so any Viam training script trains on labelsieve's labels.

One JSON object per line (goutils' image_metadata_to_JSON, custom-training branch): `image_path`,
`classification_annotations` [{annotation_label, confidence?}], `bounding_box_annotations` [{id?, annotation_label,
x_min_normalized, x_max_normalized, y_min_normalized, y_max_normalized, confidence?}] (0-1), `timestamp` (Go's
`time.String()`), `part_id`, `component_name`, and `binary_data_id`, `organization_id`, `location_id`, `robot_id` when
known. labelsieve writes no classification annotations: Viam turns every tag into one, and a bookkeeping word must never
become a class.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm
from viam.proto.app.data import BoundingBox
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData

from labelsieve.capture.format import CAPTURE_SUFFIX, write_capture
from labelsieve.cloud.captures import Origin, cache_lock, cache_root, image_key, lookup_origin, remember_origin
from labelsieve.dataset import DatasetVersion
from labelsieve.errors import InputError
from labelsieve.files import write_atomic

__all__ = ["MIME_TYPES", "VersionImage", "export_viam", "find_jsonl", "go_time", "parse_go_time", "read_viam_dataset",
           "version_images"]

log = logging.getLogger(__name__)
JSONL = "dataset.jsonl"
MIME_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp"}
_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d{4})")


def go_time(seconds: float) -> str:
    """Go's `time.Time.String()` in UTC: `2024-05-01 12:00:00.5 +0000 UTC` (fraction without trailing zeros)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


def parse_go_time(text: str) -> float | None:
    m = _GO_TIME.match(text or "")
    if not m:
        return None
    whole = datetime.strptime(f"{m.group(1)} {m.group(3)}", "%Y-%m-%d %H:%M:%S %z")
    return whole.timestamp() + float(f"0.{m.group(2) or 0}")


def find_jsonl(path: Path) -> Path | None:
    """`path` itself when it is a .jsonl file, its `dataset.jsonl` when a folder holds one, else None."""
    if path.is_file() and path.suffix == ".jsonl":
        return path
    return path / JSONL if (path / JSONL).is_file() else None


def _image_file(jsonl: Path, image_path: str) -> Path:
    """Where an exported image is now: `image_path` was written relative to the exporter's working directory (or as
    `/gcs/...` in a cloud job, or bare with --only-jsonl), so the export folder's own `data/` is tried first."""
    name = Path(image_path).name
    for candidate in (jsonl.parent / "data" / name, jsonl.parent / image_path, jsonl.parent / name, Path(image_path)):
        if candidate.is_file():
            return candidate
    raise InputError(f"{jsonl}: image {image_path} not found (looked in {jsonl.parent / 'data'})")


def _capture_of(line: dict[str, Any], data: bytes, suffix: str) -> tuple[DataCaptureMetadata, SensorData]:
    header = DataCaptureMetadata(component_type="rdk:component:camera", component_name=line.get("component_name", ""),
                                 method_name="ReadImage", type=DataType.DATA_TYPE_BINARY_SENSOR, file_extension=suffix,
                                 mime_type=MIME_TYPES.get(suffix.lower(), ""))
    reading = SensorData(binary=data)
    if (seconds := parse_go_time(line.get("timestamp", ""))) is not None:
        reading.metadata.time_requested.FromNanoseconds(round(seconds * 1e9))
        reading.metadata.time_received.CopyFrom(reading.metadata.time_requested)
    for box in line.get("bounding_box_annotations") or ():
        kept = BoundingBox(id=str(box.get("id", "")), label=box["annotation_label"],
                           x_min_normalized=box["x_min_normalized"], y_min_normalized=box["y_min_normalized"],
                           x_max_normalized=box["x_max_normalized"], y_max_normalized=box["y_max_normalized"])
        if box.get("confidence") is not None:
            kept.confidence = box["confidence"]
        reading.metadata.annotations.bboxes.append(kept)
    return header, reading


def read_viam_dataset(path: Path) -> list[Path]:
    """A `viam dataset export` folder (or its dataset.jsonl) as capture files in the cache, one per line; the cache key
    is the line and the image, so an unchanged line is not written again. Images with a binary data id are remembered,
    so `push` labels them in place."""
    jsonl = find_jsonl(path)
    if jsonl is None:
        raise InputError(f"{path}: no {JSONL} here (export one with `viam dataset export --destination=DIR ...`)")
    with cache_lock():
        return _read_lines(jsonl, cache_root() / "exports")


def _read_lines(jsonl: Path, folder: Path) -> list[Path]:
    found = []
    for number, text in enumerate(jsonl.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            image = _image_file(jsonl, line["image_path"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{jsonl}:{number}: not a Viam dataset line: {exc}") from exc
        data = image.read_bytes()
        name = hashlib.sha256(text.encode() + data).hexdigest()[:32]
        target = folder / (name + CAPTURE_SUFFIX)
        if not target.is_file():
            try:
                header, reading = _capture_of(line, data, image.suffix)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{jsonl}:{number}: bad bounding_box_annotations: {exc}") from exc
            write_capture(folder, header, [reading], name=name)
        if line.get("binary_data_id"):
            remember_origin(image_key(data), Origin(line["binary_data_id"], line.get("organization_id", "")))
        found.append(target)
    return found


@dataclass(frozen=True)
class VersionImage:
    """One image of a dataset version with its kept boxes (manifest rows; a rejected box has no class)."""

    path: Path
    rows: tuple[dict[str, Any], ...]

    @property
    def time(self) -> float | None:
        return float(self.rows[0]["time"]) if self.rows and self.rows[0].get("time") is not None else None

    def boxes(self) -> Iterator[tuple[str, tuple[float, float, float, float], float]]:
        """(label, normalized xyxy, confidence = the proposer and verifier's agreement) of each verified box."""
        for row in self.rows:
            x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in row["box"])
            agreement = (row.get("provenance") or {}).get("agreement", row.get("confidence", 1.0))
            yield row["class"], (x0, y0, x1, y1), float(agreement)


def version_images(version: DatasetVersion) -> list[VersionImage]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for text in (version.path / "manifest.jsonl").read_text().splitlines():
        row = json.loads(text)
        if row.get("class") is not None:
            rows[row["image"]].append(row)
    images = sorted(p for p in (version.path / "images").rglob("*") if p.is_file())
    return [VersionImage(p, tuple(rows.get(p.relative_to(version.path).as_posix(), ()))) for p in images]


def export_viam(version: DatasetVersion, out: Path, *, progress: bool = True) -> Path:
    """Write `version` as `viam dataset export` would: `out/dataset.jsonl` and `out/data/<image>`; `image_path` is
    `out/data/<image>` as `out` was given (relative stays relative, as Viam's CLI writes it). Returns the jsonl file."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    lines = []
    for image in tqdm(version_images(version), desc="exporting", unit="image", disable=not progress):
        target = out / "data" / image.path.name
        if not target.exists():
            try:
                os.link(image.path, target)
            except OSError:
                shutil.copyfile(image.path, target)
        line: dict[str, Any] = {
            "image_path": f"{out}/data/{image.path.name}", "classification_annotations": [],
            "bounding_box_annotations": [
                {"annotation_label": label, "x_min_normalized": x0, "x_max_normalized": x1, "y_min_normalized": y0,
                 "y_max_normalized": y1, "confidence": confidence}
                for label, (x0, y0, x1, y1), confidence in image.boxes()],
            "timestamp": go_time(image.time if image.time is not None else image.path.stat().st_mtime),
            "part_id": "", "component_name": ""}
        if origin := lookup_origin(image_key(image.path.read_bytes())):
            line["binary_data_id"] = origin.binary_data_id
            if origin.organization_id:
                line["organization_id"] = origin.organization_id
        lines.append(json.dumps(line))
    write_atomic(out / JSONL, "".join(f"{line}\n" for line in lines))
    return out / JSONL
