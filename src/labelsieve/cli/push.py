"""`labelsieve push DATASET_VERSION viam://dataset/<name>`: a version's verified boxes and images into a Viam dataset."""

from __future__ import annotations

import argparse
import sys

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve push datasets/glasses viam://dataset/glasses?org=<org id>      the latest version, into dataset "glasses"
  labelsieve push datasets/glasses/v3 viam://dataset/glasses?part=<part id>  images not from Viam are uploaded as this part's
Credentials: VIAM_API_KEY and VIAM_API_KEY_ID (an organization key: creating a dataset needs one). Images that came from
Viam get their boxes on the same binary data; pushing again adds no box twice.
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "push", "push a dataset version's verified boxes (and images Viam lacks) into a Viam dataset", EXAMPLES)
    p.add_argument("dataset", help="dataset version folder, or a dataset root for its latest version")
    p.add_argument("url", help="viam://dataset/<name or id>[?org=<org id>][&part=<part id>]; a new name is created")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.cloud.push import push
    from labelsieve.dataset import open_dataset

    report = push(open_dataset(args.dataset), args.url, progress=args.progress)
    print(f"labelsieve push: {report.summary()}", file=sys.stderr if report.failed else sys.stdout)
    return 1 if report.failed else 0
