"""`labelsieve train DATASET`: ultralytics training, offline, into a versioned model directory (printed last)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve train datasets/glasses                           latest version, yolo11n from scratch -> models/v1
  labelsieve train datasets/glasses/v2 --model yolo11s.pt --epochs 50 --imgsz 640 --device 0,1
  labelsieve train s3://bucket/datasets/glasses --out s3-models --device cpu
  labelsieve train datasets/glasses --int8                    also model.int8.onnx, its val mAP beside the float one
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "train", "train a YOLO on a dataset version; writes weights, ONNX, metrics, plots, classes and "
             "this command into a new model directory and prints its path last", EXAMPLES)
    p.add_argument("dataset", metavar="DATASET", help="dataset version folder, dataset root (latest version), or URL")
    p.add_argument("--model", default="yolo11n.yaml", help="architecture yaml (from scratch) or .pt to fine-tune")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=640, help="training and export image size")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one), cpu, cuda (every GPU), or GPU numbers: 0, 0,1 (default auto)")
    p.add_argument("--workers", type=int, default=8, help="dataloader processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("models"), help="model versions v1, v2, ... go here (./models)")
    p.add_argument("--int8", action="store_true", help="also quantize the ONNX model to int8 (calibrated on the train "
                   "split) for CPUs; robots then serve it, and model.json records both held-out scores")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.train.trainer import load_model_info, train

    model_dir = train(args.dataset, model=args.model, epochs=args.epochs, imgsz=args.imgsz, device=args.device,
                      batch=args.batch, workers=args.workers, seed=args.seed, out=args.out,
                      command=shlex.join(["labelsieve", *sys.argv[1:]]))
    if args.int8:
        from labelsieve.train.quantize import quantize_int8

        quantize_int8(model_dir, device=args.device)
    print(summary(model_dir, load_model_info(model_dir)))
    print(model_dir)
    return 0


def summary(model_dir: Path, info: dict[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in info["metrics"].items())
    return (f"model {model_dir.name} ({info['id']}): {', '.join(info['classes'])}\n"
            f"  held out  {metrics} (val split of dataset {info['dataset']['name']})\n"
            f"  files     {model_dir / 'model.onnx'}, model.pt, model.json, plots/, train.log (ultralytics' full log)\n"
            f"  next      labelsieve predict {model_dir} IMAGE...   draws its boxes, to eyeball it\n"
            f"            labelsieve deploy {model_dir} --config machine.json --service fast")
