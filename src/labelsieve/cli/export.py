"""`labelsieve export DATASET --format NAME OUT`: a dataset version in another tool's format. One row of `FORMATS` per
format: name -> (what it is, function(version, out) -> what it wrote)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from labelsieve.cli.common import verb
from labelsieve.dataset import DatasetVersion

__all__ = ["FORMATS", "add"]


def _label_studio(version: DatasetVersion, out: Path) -> Path:
    from labelsieve.review.label_studio import export_label_studio

    return export_label_studio(version, out)


def _viam(version: DatasetVersion, out: Path) -> Path:
    from labelsieve.cloud.jsonl import export_viam

    return export_viam(version, out)


def _coco(version: DatasetVersion, out: Path) -> Path:
    from labelsieve.dataset.export_coco import export_coco

    return export_coco(version, out)


FORMATS: dict[str, tuple[str, Callable[[DatasetVersion, Path], Path]]] = {
    "label-studio": ("tasks.json (boxes as predictions) + label_config.xml; images served by local-files", _label_studio),
    "viam": ("dataset.jsonl + data/, as `viam dataset export` writes (any Viam training script reads it)", _viam),
    "coco": ("coco.json with agreement, verifier answer and provenance per box (FiftyOne: extra_attrs=True)", _coco),
}

EXAMPLES = """examples:
  LOCAL_FILES_DOCUMENT_ROOT=$PWD labelsieve export datasets/glasses --format label-studio ls/glasses
  labelsieve export datasets/glasses --format coco out/glasses      -> out/glasses/coco.json
  labelsieve export datasets/glasses --format viam exported         -> exported/dataset.jsonl + exported/data/
formats:
""" + "".join(f"  {name:14} {text}\n" for name, (text, _) in FORMATS.items())


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "export", "write a dataset's latest version (or a version folder) in another tool's format; prints "
             "what it wrote last", EXAMPLES)
    p.add_argument("dataset", metavar="DATASET", help="dataset folder (its latest version) or a version folder")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="the format to write")
    p.add_argument("out", type=Path, metavar="OUT", help="folder to write into")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.dataset import open_dataset

    print(FORMATS[args.format][1](open_dataset(args.dataset), args.out), flush=True)
    return 0
