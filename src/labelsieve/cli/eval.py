"""`labelsieve eval CONFIG --filter NAME --truth COCO.json --out DIR`: label quality against a hand-labelled sample."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from labelsieve.cli.common import add_machine_config, verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve eval machine.json --filter labeler --truth sample/coco.json --out eval/v1
  labelsieve eval machine.json --filter labeler --truth labels.json --images frames/ --out eval/v2
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "eval", "measure an auto-label filter against a hand-labelled COCO sample: precision and recall per "
             "class with and without the verifier, its confusion, cost per frame, thresholds; an HTML report", EXAMPLES)
    add_machine_config(p)
    p.add_argument("--filter", required=True, metavar="NAME", help="the auto-label filter service in CONFIG")
    p.add_argument("--truth", required=True, type=Path, metavar="COCO.json", help="hand labels in COCO detection JSON")
    p.add_argument("--images", type=Path, metavar="DIR", help="where the truth's file_names are (default: its folder)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="report.json and report.html go here")
    p.set_defaults(handler=handle)


FILTER = "labelsieve:vision:autolabel-filter"


def check_filter(config: Path, name: str) -> None:
    """`--filter` names an auto-label filter in `config`; otherwise say what it names and which filters there are."""
    from labelsieve.errors import InputError
    from labelsieve.runtime.config import load_config

    resources = load_config(config, unset_env="collect").resources
    filters = [r.name for r in resources if r.model == FILTER]
    found = next((r for r in resources if r.name == name), None)
    if found is None or found.model != FILTER:
        what = f"--filter {name!r} is a {found.model}, not an auto-label filter" if found else \
            f"--filter: no service named {name!r}"
        raise InputError(f"{what}; filters here: {', '.join(filters) or f'none (add a {FILTER})'}")


def handle(args: argparse.Namespace) -> int:
    from labelsieve.eval import evaluate, summary_table

    check_filter(args.config, args.filter)
    report = asyncio.run(evaluate(args.config, args.filter, args.truth, args.out, images_dir=args.images,
                                  data_dir=args.data_dir))
    print(summary_table(report))
    print(f"report: {(args.out / 'report.html').resolve()}")
    return 0
