"""A small built dataset as a review sees it: what the review page and the Label Studio round trip tests share."""

from __future__ import annotations

import json
from pathlib import Path

from labelsieve.dataset import build_dataset
from support.scenes import write_scenes

__all__ = ["review_dataset"]


def review_dataset(root: Path) -> Path:
    """A built v1 whose manifest gives each box a different agreement, one box an "unsure" verdict, and the blue boxes a
    rule whose negative label ("not_blue") no box has yet."""
    write_scenes(root / "capture", range(8), classes=("red", "blue", "not_red"))
    version = build_dataset([str(root / "capture")], root / "ds", progress=False).version
    manifest = version.path / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):
        x0, y0, x1, y1 = (round(v * 64) for v in row["box"])  # the frames are 64 px; the crop pads the box by 4 px
        row["provenance"] |= {"agreement": round(0.99 - 0.02 * ((i * 7) % len(rows)), 3), "question": f"Is this {row['class']}?",
                              "crop": [max(x0 - 4, 0), max(y0 - 4, 0), min(x1 + 4, 64), min(y1 + 4, 64)]}
        if row["class"] == "blue":
            row["provenance"] |= {"label": "blue", "negative_label": "not_blue"}
    rows[-1]["provenance"]["answer"] = "unsure"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "ds"
