"""A hand-labelled sample in COCO JSON (what every labelling tool exports), read into what the evaluation compares."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from labelsieve.dataset.formats import from_coco
from labelsieve.detections import Detections
from labelsieve.errors import InputError

__all__ = ["Truth", "load_coco"]


@dataclasses.dataclass(frozen=True)
class Truth:
    images: tuple[Detections, ...]  # one per image, its file in `metadata["path"]`
    classes: tuple[str, ...]  # the sample's categories: a class outside them is not judged


def load_coco(path: Path, images_dir: Path | None = None) -> Truth:
    """Images are found by `file_name` under `images_dir` (default: the JSON file's folder); an image listed but absent,
    or an annotation naming an unknown image or category, is an error: a silently smaller sample would mislead."""
    try:
        raw = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise InputError(f"{path}: not a COCO detection file (ValueError: {exc})") from exc
    frames, classes = from_coco(raw, str(path))
    root = Path(images_dir) if images_dir is not None else Path(path).parent
    missing = [f.metadata["file_name"] for f in frames if not (root / f.metadata["file_name"]).is_file()]
    if missing:
        raise InputError(f"{path}: {len(missing)} image(s) not found under {root}, e.g. {missing[0]!r}; pass --images DIR")
    if not frames:
        raise InputError(f"{path}: lists no images")
    return Truth(tuple(f.with_metadata(path=root / f.metadata["file_name"]) for f in frames), classes)
