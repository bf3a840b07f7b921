"""A hand-labelled sample in COCO JSON (what every labelling tool exports), read into what the evaluation compares."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from labelsieve.errors import InputError

__all__ = ["Truth", "TruthImage", "load_coco"]


@dataclasses.dataclass(frozen=True)
class TruthImage:
    path: Path
    boxes: tuple[tuple[tuple[float, float, float, float], str], ...]  # (xyxy, class name)


@dataclasses.dataclass(frozen=True)
class Truth:
    images: tuple[TruthImage, ...]
    classes: tuple[str, ...]  # the sample's categories: a class outside them is not judged


def load_coco(path: Path, images_dir: Path | None = None) -> Truth:
    """Images are found by `file_name` under `images_dir` (default: the JSON file's folder); an image listed but absent,
    or an annotation naming an unknown image or category, is an error: a silently smaller sample would mislead."""
    try:
        raw: dict[str, Any] = json.loads(Path(path).read_text())
        categories = {int(c["id"]): str(c["name"]) for c in raw["categories"]}
        files = {int(i["id"]): str(i["file_name"]) for i in raw["images"]}
        boxes: dict[int, list[tuple[tuple[float, float, float, float], str]]] = {i: [] for i in files}
        for a in raw.get("annotations", []):
            x, y, w, h = (float(v) for v in a["bbox"])
            if a["image_id"] not in files or a["category_id"] not in categories:
                raise InputError(f"{path}: annotation {a.get('id')} names an unknown image or category")
            boxes[int(a["image_id"])].append(((x, y, x + w, y + h), categories[int(a["category_id"])]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a COCO detection file ({type(exc).__name__}: {exc})") from exc
    root = Path(images_dir) if images_dir is not None else Path(path).parent
    missing = [name for name in files.values() if not (root / name).is_file()]
    if missing:
        raise InputError(f"{path}: {len(missing)} image(s) not found under {root}, e.g. {missing[0]!r}; pass --images DIR")
    if not files:
        raise InputError(f"{path}: lists no images")
    return Truth(tuple(TruthImage(root / files[i], tuple(boxes[i])) for i in sorted(files)),
                 tuple(dict.fromkeys(categories.values())))
