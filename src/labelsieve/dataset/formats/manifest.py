"""A dataset version's `manifest.jsonl`: one row per box (image, split, class, normalized box, confidence, source file and
reading, capture time, and the box's provenance), which review reads back to write the next version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelsieve.detections import Detections

__all__ = ["as_manifest", "from_manifest"]


def as_manifest(detections: Detections, image: str, split: str, width: int, height: int,
                class_ids: dict[str, int]) -> list[dict[str, Any]]:
    scale = np.array([width, height, width, height], np.float64)
    meta = detections.metadata
    return [{"image": image, "split": split, "class": name, "class_id": class_ids[name],
             "box": [round(float(v), 6) for v in xyxy / scale], "confidence": confidence,
             "source": meta.get("source", ""), "time": meta.get("time", 0.0), "provenance": provenance}
            for (xyxy, confidence, name), provenance in zip(detections, detections.provenance)]


def from_manifest(rows: Sequence[dict[str, Any]], width: int, height: int, classes: Sequence[str] = ()) -> Detections:
    """The boxes of one image's rows, in pixels; `source` and `time` of the first row become the metadata."""
    scale = np.array([width, height, width, height], np.float32)
    first = rows[0] if rows else {}
    return Detections(np.array([r["box"] for r in rows], np.float32).reshape(-1, 4) * scale,
                      np.array([float(r["confidence"]) for r in rows], np.float32), np.array([str(r["class"]) for r in rows], np.str_), classes=tuple(classes),
                      metadata={"source": first.get("source", ""), "time": first.get("time", 0.0)}
                      ).with_provenance([r.get("provenance") for r in rows])
