"""The two exports of a dataset version: YOLO (what ultralytics trains on) and COCO JSON (what most other tools read)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from labelsieve.dataset.frames import Frame

__all__ = ["SPLITS", "coco_json", "data_yaml", "yolo_label"]

SPLITS = ("train", "val")


def yolo_label(frame: Frame, class_ids: dict[str, int]) -> str:
    """One line per box: class id, then center x, center y, width, height, normalized. A frame without boxes gets an
    empty file: a background image, which ultralytics trains as "nothing here"."""
    lines = []
    for box in frame.boxes:
        x0, y0, x1, y1 = box.xyxy
        lines.append(f"{class_ids[box.label]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
    return "".join(line + "\n" for line in lines)


def data_yaml(classes: Sequence[str]) -> str:
    """No `path` key: ultralytics then resolves `images/...` against this file's folder, so a version can be moved or
    copied to another machine as it is. Names are written as JSON strings, which YAML reads as the same text."""
    names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(classes))
    return f"train: images/train\nval: images/val\nnc: {len(classes)}\nnames:\n{names}"


def coco_json(frames: Sequence[Frame], names: Sequence[str], classes: Sequence[str], split: str) -> str:
    """COCO detection JSON for one split; `file_name` is relative to the version folder, ids are 1-based."""
    images, annotations = [], []
    ids = {name: i + 1 for i, name in enumerate(classes)}
    for image_id, (frame, name) in enumerate(zip(frames, names), start=1):
        images.append({"id": image_id, "file_name": f"images/{split}/{name}", "width": frame.width, "height": frame.height})
        for box in frame.boxes:
            x0, y0, x1, y1 = box.xyxy
            w, h = (x1 - x0) * frame.width, (y1 - y0) * frame.height
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[box.label],
                                "bbox": [round(x0 * frame.width, 2), round(y0 * frame.height, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": 0, "score": box.confidence})
    categories = [{"id": ids[name], "name": name, "supercategory": "none"} for name in classes]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories}, indent=1)
