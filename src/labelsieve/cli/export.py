"""`labelsieve export DATASET --format FORMAT OUT`: a dataset version in another tool's format. One writer per format in
`WRITERS`, each `(version, out) -> the main file written`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from labelsieve.cli.common import verb

if TYPE_CHECKING:
    from labelsieve.dataset import DatasetVersion

__all__ = ["WRITERS", "add"]


def _viam(version: DatasetVersion, out: Path) -> Path:
    from labelsieve.cloud.jsonl import export_viam

    return export_viam(version, out)


#: format name -> writer; the version arrives opened (`labelsieve.dataset.open_dataset`).
WRITERS: dict[str, Callable[[DatasetVersion, Path], Path]] = {"viam": _viam}

EXAMPLES = """examples:
  labelsieve export datasets/glasses --format viam exported   dataset.jsonl + data/, as `viam dataset export` writes
"""


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = verb(sub, "export", "write a dataset version in another tool's format", EXAMPLES)
    p.add_argument("dataset", help="dataset version folder, or a dataset root for its latest version")
    p.add_argument("--format", required=True, choices=sorted(WRITERS), help="viam: Viam's dataset.jsonl + data/")
    p.add_argument("out", type=Path, help="folder to write")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.dataset import open_dataset

    print(WRITERS[args.format](open_dataset(args.dataset), args.out))
    return 0
