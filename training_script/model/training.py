"""Train a YOLO detector from a Viam `dataset.jsonl` and write what labelsieve's fast detector and Viam's registry take.

Viam runs `python3 -m model.training --dataset_file=<jsonl> --model_output_directory=<dir>` plus each custom argument as
`--key=value`. Arguments (labelsieve's `train` words): `--model` (a .pt to fine-tune, or an architecture .yaml; default
yolo11n.pt, downloaded by ultralytics), `--epochs` (100), `--imgsz` (640), `--batch` (16), `--device` (GPU when there is
one), `--seed` (0), `--val_fraction` (0.2), `--labels` ("a b" or "a,b": train only these classes, in this order).

Output, in `--model_output_directory` (Viam makes it the new model version; `tmp/` is left out):
  model.onnx   the best weights exported for onnxruntime (class names in its metadata)
  labels.txt   one class per line, in class-id order (what Viam's ML model services read)
  model.json   labelsieve's model record: id, classes, held-out metrics, the dataset file's hash, settings

Only the standard library is needed to read the dataset and lay out the YOLO folder; ultralytics is imported to train.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCORE = "mAP50-95"
_METRICS = {"metrics/mAP50-95(B)": "mAP50-95", "metrics/mAP50(B)": "mAP50", "metrics/precision(B)": "precision",
            "metrics/recall(B)": "recall"}


@dataclass(frozen=True)
class Example:
    image: Path
    boxes: tuple[tuple[str, float, float, float, float], ...]  # label, normalized x0, y0, x1, y1


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="model.training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_file", required=True, type=Path)
    p.add_argument("--model_output_directory", required=True, type=Path)
    p.add_argument("--model", default="yolo11n.pt")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--labels", default="")
    p.add_argument("--workers", type=int, default=8)
    return p.parse_args(argv)


def _image(jsonl: Path, image_path: str) -> Path:
    """The image as it is (`/gcs/...` in Viam's job), else in the export's `data/` folder, else beside the file."""
    for candidate in (Path(image_path), jsonl.parent / "data" / Path(image_path).name, jsonl.parent / image_path,
                      jsonl.parent / Path(image_path).name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{jsonl}: image {image_path} not found")


def read_dataset(jsonl: Path) -> list[Example]:
    """Every line with its boxes (clipped to [0, 1]); classification annotations (tags) are not detection labels."""
    examples = []
    for number, text in enumerate(jsonl.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            boxes = []
            for b in line.get("bounding_box_annotations") or ():
                x0, y0, x1, y1 = (min(max(float(b[k]), 0.0), 1.0) for k in
                                  ("x_min_normalized", "y_min_normalized", "x_max_normalized", "y_max_normalized"))
                if x1 > x0 and y1 > y0:
                    boxes.append((str(b["annotation_label"]), x0, y0, x1, y1))
            examples.append(Example(_image(jsonl, line["image_path"]), tuple(boxes)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{jsonl}:{number}: not a Viam dataset line: {exc}") from exc
    if not examples:
        raise ValueError(f"{jsonl}: no images")
    return examples


def class_list(examples: Sequence[Example], labels: str = "") -> list[str]:
    chosen = [name for name in labels.replace(",", " ").split() if name]
    return chosen or sorted({box[0] for e in examples for box in e.boxes})


def _side(example: Example, val_fraction: float, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}\0{example.image.name}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def write_yolo(examples: Sequence[Example], classes: Sequence[str], root: Path, val_fraction: float = 0.2,
               seed: int = 0) -> Path:
    """A YOLO dataset folder (images by link or copy, one label file each, data.yaml); the split is a seeded hash of the
    file name, so it is stable. Images are numbered, so two with one base name never collide. Returns data.yaml."""
    ids = {name: i for i, name in enumerate(classes)}
    sides = [_side(e, val_fraction, seed) for e in examples]
    if "val" not in sides and len(examples) > 1 and val_fraction > 0:
        sides[-1] = "val"  # ultralytics needs a val split to measure anything
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, (example, split) in enumerate(zip(examples, sides)):
        name = f"{i:06d}_{example.image.stem}"
        target = root / "images" / split / f"{name}{example.image.suffix.lower()}"
        try:
            target.symlink_to(example.image.resolve())
        except OSError:
            shutil.copyfile(example.image, target)
        (root / "labels" / split / f"{name}.txt").write_text("".join(
            f"{ids[label]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}\n"
            for label, x0, y0, x1, y1 in example.boxes if label in ids))
    names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(classes))
    data = root / "data.yaml"
    data.write_text(f"path: {json.dumps(str(root.resolve()))}\ntrain: images/train\nval: images/val\n"
                    f"nc: {len(classes)}\nnames:\n{names}")
    return data


def train(args: argparse.Namespace) -> Path:
    examples = read_dataset(args.dataset_file)
    classes = class_list(examples, args.labels)
    if not classes:
        raise ValueError(f"{args.dataset_file}: no bounding boxes to train a detector on")
    out = args.model_output_directory
    out.mkdir(parents=True, exist_ok=True)
    from ultralytics import YOLO  # imported here: reading and laying out the dataset needs no torch

    with tempfile.TemporaryDirectory(prefix="labelsieve-train-") as work:
        data = write_yolo(examples, classes, Path(work) / "dataset", args.val_fraction, args.seed)
        results = YOLO(args.model).train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                                         device=args.device, workers=args.workers, seed=args.seed, deterministic=True,
                                         project=str(Path(work) / "runs"), name="run", exist_ok=True, verbose=False)
        best = Path(work) / "runs" / "run" / "weights" / "best.pt"
        exported = Path(YOLO(str(best)).export(format="onnx", imgsz=args.imgsz, simplify=True, device="cpu"))
        shutil.copyfile(exported, out / "model.onnx")
    values = getattr(results, "results_dict", None) or {}
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in classes))
    info: dict[str, Any] = {
        "id": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()[:16], "classes": classes,
        "metrics": {short: round(float(values[key]), 5) for key, short in _METRICS.items() if key in values},
        "score": SCORE,
        "dataset": {"id": hashlib.sha256(args.dataset_file.read_bytes()).hexdigest(), "name": args.dataset_file.name,
                    "path": str(args.dataset_file)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "device": args.device,
        "seed": args.seed, "command": "python3 -m model.training " + " ".join(sys.argv[1:]),
    }
    (out / "model.json").write_text(json.dumps(info, indent=2))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        out = train(args)
    except (ValueError, FileNotFoundError) as exc:  # a bad dataset: one clear line and a failed job
        print(f"model.training: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
