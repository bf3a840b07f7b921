"""`labelsieve validate CONFIG`: every check `run` makes, including each module's own ValidateConfig; starts nothing."""

from __future__ import annotations

import argparse
import asyncio

from labelsieve.cli.common import add_machine_config, verb

__all__ = ["add"]


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "validate", "validate a machine config, including each module's own checks, then exit",
             "examples:\n  labelsieve validate configs/camera.json")
    add_machine_config(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.runtime import Runtime, RuntimeOptions

    options = RuntimeOptions(args.config.resolve(), data_dir=args.data_dir, watch_config=False,
                             packages_dir=args.packages_dir)
    config = asyncio.run(Runtime(options).validate())
    print(f"{args.config}: valid ({len(config.modules)} modules, {len(config.resources)} resources)")
    for warning in config.warnings:
        print(f"  warning, for viam-server: {warning}")
    return 0
