"""`labelsieve predict MODEL IMAGE...`: a trained model's boxes drawn on pictures, to eyeball it before deploying."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsieve.cli.common import verb
from labelsieve.errors import InputError

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve predict models/v1 frames/*.jpg                   boxes drawn into ./predictions, one line per image
  labelsieve predict models/v1 frame.jpg --out /tmp/p --confidence 0.5
"""

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "predict", "draw a model's boxes on images (a folder is read for its pictures) and print a line per "
             "image, with the same detector the fast-detector service runs", EXAMPLES)
    p.add_argument("model", type=Path, metavar="MODEL", help="a model directory from `labelsieve train`, or a .onnx/.pt")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="drawn copies go here (./predictions)")
    p.add_argument("--confidence", type=float, default=0.25, help="lowest confidence drawn (0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS overlap (0.45)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs (auto)")
    p.set_defaults(handler=handle)


def _pictures(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such image or folder")
    return found


def handle(args: argparse.Namespace) -> int:
    from PIL import ImageDraw

    from labelsieve import images
    from labelsieve.detect.fast import load_model

    model = load_model(args.model, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    unreadable = 0
    for path in _pictures(args.images):
        try:
            image = images.decode(path.read_bytes(), where=str(path))
        except InputError as exc:
            print(f"{path}: skipped, {exc}")
            unreadable += 1
            continue
        found = model.detect(image, args.confidence, args.iou, 300)
        draw = ImageDraw.Draw(image)
        for box, name, score in zip(found.xyxy.tolist(), found.class_name.tolist(), found.confidence.tolist(),
                                    strict=True):
            draw.rectangle(box, outline=(255, 64, 0), width=max(1, round(min(image.size) / 200)))
            draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=(255, 64, 0))
        target = args.out / f"{path.stem}.jpg"
        target.write_bytes(images.encode(image))
        counts = ", ".join(f"{n} {list(found.class_name).count(n)}" for n in dict.fromkeys(found.class_name.tolist()))
        print(f"{path}: {len(found.xyxy)} boxes{' (' + counts + ')' if counts else ''} -> {target}")
    return 1 if unreadable else 0
