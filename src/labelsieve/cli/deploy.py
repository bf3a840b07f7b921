"""`labelsieve deploy MODEL_DIR`: to one machine's config (applied live) or to a fleet's storage URL."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsieve.cli.common import verb

__all__ = ["add"]

EXAMPLES = """examples:
  labelsieve deploy models/v3 --config machine.json --service detector     one machine, applied live
  labelsieve deploy models/v3 --to s3://bucket/fleet/glasses                every robot polling that URL
  labelsieve deploy models/v4 --to s3://bucket/fleet/glasses --force        skip the promotion gate
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "deploy", "deploy a model directory to a machine config or a fleet URL, if it has the deployed "
             "model's classes and scores no worse on held-out data", EXAMPLES)
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a directory written by `labelsieve train`")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="machine config JSON to rewrite (with --service)")
    where.add_argument("--to", metavar="URL", help="fleet storage URL (s3://..., file://...)")
    p.add_argument("--service", help="the fast-detector service in --config")
    p.add_argument("--force", action="store_true", help="deploy even if classes differ or the score is worse")
    p.add_argument("--create", action="store_true", help="add the --service to --config if it has none of that name")
    p.add_argument("--teacher-gate", action="store_true",
                   help="also require the candidate to disagree with the teacher's labels on fewer held-out frames than "
                        "the deployed model")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.errors import InputError
    from labelsieve.train.deploy import deploy_to_config, deploy_to_fleet

    if args.config:
        if not args.service:
            raise InputError("--config needs --service NAME (the fast-detector service to point at the model)")
        decision = deploy_to_config(args.model_dir, args.config, args.service, args.force, args.create, args.teacher_gate)
        print(f"promotion: {decision}\n{args.config}: {args.service} now serves {args.model_dir.resolve()}")
    else:
        url, decision = deploy_to_fleet(args.model_dir, args.to, args.force, teacher=args.teacher_gate)
        print(f"promotion: {decision}\npublished {url}; {args.to.rstrip('/')}/current points at it")
    return 0
