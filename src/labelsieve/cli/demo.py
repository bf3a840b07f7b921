"""`labelsieve demo`: the main job end to end (see `labelsieve.demo`); `make demo` runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsieve.cli.common import verb

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "demo", "run the whole loop: capture with the auto-label filter, sync, dataset, training, deploy",
             "examples:\n  labelsieve demo                 into ./demo-run (replaced on each run)\n"
             "  labelsieve demo --epochs 20 --frames 48")
    p.add_argument("--out", type=Path, default=Path("demo-run"), help="working folder, replaced on each run (./demo-run)")
    p.add_argument("--frames", type=int, default=24, help="sample frames the camera plays (24)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs for the fast detector (5)")
    p.add_argument("--imgsz", type=int, default=320, help="training image size (320)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.demo import run_demo, summary

    print(summary(run_demo(args.out, frames=args.frames, epochs=args.epochs, imgsz=args.imgsz)), flush=True)
    return 0
