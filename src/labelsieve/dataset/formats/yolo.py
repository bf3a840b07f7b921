"""YOLO: one label line per box (class id, then center x, center y, width, height, normalized), and `data.yaml`."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from labelsieve.detections import Detections
from labelsieve.errors import InputError

__all__ = ["SPLITS", "as_yolo", "data_yaml", "from_yolo"]

SPLITS = ("train", "val")


def as_yolo(detections: Detections, width: int, height: int, class_ids: dict[str, int]) -> str:
    """A frame without boxes gets an empty file: a background image, which ultralytics trains as "nothing here"."""
    lines = []
    for (x0, y0, x1, y1), _, name in detections:
        x0, x1, y0, y1 = x0 / width, x1 / width, y0 / height, y1 / height
        lines.append(f"{class_ids[name]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
    return "".join(line + "\n" for line in lines)


def from_yolo(text: str, width: int, height: int, classes: Sequence[str], where: str = "labels") -> Detections:
    """The boxes of one label file, in pixels; YOLO has no confidence, so each is 1."""
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            class_id, *numbers = line.split()
            name = classes[int(class_id)]
            cx, cy, w, h = (float(v) for v in numbers)
        except (ValueError, IndexError) as exc:
            raise InputError(f"{where}:{n}: not a YOLO label line (class cx cy w h) of {len(classes)} classes: "
                             f"{line!r}") from exc
        rows.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height, name))
    return Detections(np.array([r[:4] for r in rows], np.float32).reshape(-1, 4), np.ones(len(rows), np.float32),
                      np.array([r[4] for r in rows], np.str_), classes=tuple(classes))


def data_yaml(classes: Sequence[str]) -> str:
    """No `path` key: ultralytics then resolves `images/...` against this file's folder, so a version can be moved or
    copied to another machine as it is. Names are written as JSON strings, which YAML reads as the same text."""
    names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(classes))
    return f"train: images/train\nval: images/val\nnc: {len(classes)}\nnames:\n{names}"
