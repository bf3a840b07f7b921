"""`labelsieve sync CAPTURE_DIR URL`: upload closed capture files to a folder or any fsspec URL, by hand, with progress;
the same code the data manager's periodic sync runs (`labelsieve.capture.sync`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve sync ~/.viam/capture /mnt/nas/captures        to a folder
  labelsieve sync ~/.viam/capture s3://my-bucket/robot-1    to S3 (credentials from the AWS_* variables or ~/.aws)
  labelsieve sync ~/.viam/capture viam://?part=PART_ID       to Viam's app, as viam-server syncs (VIAM_API_KEY[_ID])
Safe to interrupt and re-run: nothing is uploaded twice, and a local file is deleted only once its copy is verified.
A store that stops answering fails each file after --timeout; after three in a row the run stops and exits non-zero.
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "sync", "upload closed .capture files, keeping their layout; each local file is deleted once verified",
             EXAMPLES)
    p.add_argument("capture_dir", type=Path, help="the data manager's capture_dir")
    p.add_argument("url", help="destination: a folder, an fsspec URL (s3://bucket/prefix, gs://..., ...), or viam:// (Viam's app)")
    p.add_argument("--workers", type=int, default=4, help="files uploaded at a time (default 4)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up on a file the store has not taken in this long (default 60)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.capture.sync import DEFAULT_TIMEOUT_S, sync

    report = sync(args.capture_dir.expanduser(), args.url, progress=args.progress, workers=args.workers,
                  timeout_s=args.timeout or DEFAULT_TIMEOUT_S)
    print(f"labelsieve sync: {report.summary()}", file=sys.stderr if report.failed or report.conflicts else sys.stdout)
    return 1 if report.failed or report.conflicts else 0
