"""`labelsieve label SOURCE... --config CONFIG --filter NAME --out URL`: label what is already captured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labelsieve.cli.common import add_data_dir, verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve label ~/.viam/capture --config machine.json --filter labeler --out labeled/
  labelsieve label s3://bucket/robot1 frames/ 'clips/*.mp4' --every 10 --config machine.json --filter labeler \\
      --out s3://bucket/labeled                       capture files, images and videos mixed, into a bucket
  labelsieve label clips/ --fps 2 --config machine.json --filter labeler --out labeled/ --ray auto
  (killed? run the same command again: finished frames are skipped, nothing is written twice)
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "label", "label captured frames (capture files, image folders or globs, videos) with an auto-label "
             "filter's stages into capture files, as the live filter and the data manager would; resumable", EXAMPLES)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder or fsspec URL of .capture files, an image folder or glob, or a video file")
    p.add_argument("--config", required=True, type=Path, help="machine config JSON holding the filter and its stages")
    p.add_argument("--filter", required=True, metavar="NAME", help="the auto-label filter service in CONFIG")
    p.add_argument("--out", required=True, metavar="URL", help="where labeled capture files go: a folder or fsspec URL")
    video = p.add_mutually_exclusive_group()
    video.add_argument("--every", type=int, default=1, metavar="N", help="videos: every Nth frame (default 1)")
    video.add_argument("--fps", type=float, default=0.0, metavar="N", help="videos: about N frames a second")
    p.add_argument("--ledger", type=Path, help="the resume ledger (default: beside a local --out, else under --data-dir)")
    p.add_argument("--in-flight", type=int, default=8, metavar="N", help="frames between proposer and file at once (with a filter student: streams at once)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run on Ray Data (pip install labelsieve[scale])")
    p.add_argument("--proposers", type=int, metavar="N", help="Ray: proposer actors (default: GPUs, else CPUs / 2)")
    p.add_argument("--verifiers", type=int, metavar="N", help="Ray: verifier actors (default: CPUs / 2)")
    p.add_argument("--actor-cpus", type=float, default=1.0, metavar="N", help="Ray: CPUs each actor reserves")
    add_data_dir(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.label import label
    from labelsieve.label.ledger import FAILED

    if args.every < 1 or args.fps < 0 or args.in_flight < 1:
        raise SystemExit("labelsieve label: --every and --in-flight must be at least 1, --fps 0 or more")
    summary = label(args.sources, args.config, args.filter, args.out, data_dir=args.data_dir, every=args.every,
                    fps=args.fps, ledger=args.ledger, in_flight=args.in_flight, ray=args.ray, proposers=args.proposers,
                    verifiers=args.verifiers, actor_cpus=args.actor_cpus)
    print(json.dumps(summary, indent=2))
    return 1 if set(summary["failures"]) & set(FAILED) else 0  # a stage failed: run it again to redo those frames
