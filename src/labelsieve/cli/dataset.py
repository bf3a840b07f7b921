"""`labelsieve dataset build SOURCE... OUT`: the next dataset version from capture folders or synced URLs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve dataset build ~/.labelsieve/capture datasets/glasses    a local capture folder -> datasets/glasses/v1
  labelsieve dataset build s3://bucket/capture datasets/glasses      again, from the synced copy -> v2
  labelsieve dataset build viam://dataset/glasses?org=ORG datasets/glasses   from Viam's app (VIAM_API_KEY, VIAM_API_KEY_ID)
  labelsieve dataset build exported/ datasets/glasses               a `viam dataset export` folder (dataset.jsonl + data/)
  labelsieve dataset build cap1 cap2 datasets/glasses --val-fraction 0.25 --seed 3
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("dataset", help="build dataset versions from captures")
    verbs = top.add_subparsers(dest="dataset_command", required=True)
    p = verb(verbs, "build", "build the next version of a YOLO + COCO dataset from .capture files "
             "(folders or fsspec URLs); prints the version folder last", EXAMPLES)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="capture folder or URL (s3://..., gs://...), viam://dataset/<name or id>, "
                   "viam://data?<filter>, or a viam dataset export folder")
    p.add_argument("out", type=Path, metavar="OUT", help="dataset folder; versions v1, v2, ... are made inside it")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of frames held out for validation (0.2)")
    p.add_argument("--seed", type=int, default=0, help="split seed: the same seed and frames give the same split")
    p.add_argument("--gap-s", type=float, default=10.0,
                   help="consecutive similar frames closer than this are one scene, kept on one side (10)")
    p.add_argument("--fill-ignore", action="store_true",
                   help="keep frames with ignore regions (boxes the verifier left unresolved), painted over, "
                        "instead of skipping them")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.dataset import build_dataset

    result = build_dataset(args.sources, args.out, seed=args.seed, val_fraction=args.val_fraction, gap_s=args.gap_s,
                           progress=True, fill_ignore=args.fill_ignore)
    print(_summary(result.summary, result.created))
    print(result.version.path)
    return 0


def _summary(summary: dict[str, Any], created: bool) -> str:
    lines = [f"{summary['version']} ({summary['id'][:12]}){'' if created else ': unchanged, no new version'}",
             (f"  images {summary['images']} ({summary['background_images']} without boxes, "
             f"{summary['duplicate_frames']} duplicate frames dropped), scenes {summary['groups']}"),
             f"  split  train {summary['split']['train']}, val {summary['split']['val']}",
             f"  boxes  {summary['boxes']}: " + ", ".join(f"{k} {v}" for k, v in summary["boxes_per_class"].items())]
    if summary["skipped"]:
        lines.append(f"  skipped {len(summary['skipped'])}:")
        lines += [f"    {s['reason']}" for s in summary["skipped"]]
    return "\n".join(lines)
