"""`labelsieve import label-studio EXPORT.json DATASET`: another tool's review of a dataset as its next version."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve import label-studio project-1-at-2026-12-03.json datasets/glasses   -> datasets/glasses/v<N+1>
The export is Label Studio's JSON export of the tasks `labelsieve export --format label-studio` wrote; tasks nobody
annotated keep their boxes as they are.
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("import", help="bring another tool's review back as a dataset's next version")
    tools = top.add_subparsers(dest="import_command", required=True)
    p = verb(tools, "label-studio", "turn a Label Studio JSON export into the dataset's next version; prints its "
             "folder last", EXAMPLES)
    p.add_argument("export", type=Path, metavar="EXPORT.json", help="Label Studio's JSON export")
    p.add_argument("dataset", metavar="DATASET", help="the dataset the tasks were exported from")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.review.label_studio import import_label_studio

    print(import_label_studio(args.export, args.dataset).path, flush=True)
    return 0
