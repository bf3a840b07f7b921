"""Arguments several verbs share, spelt once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_log_level", "add_machine_config", "verb"]


def verb(sub: argparse._SubParsersAction, name: str, text: str, examples: str = "") -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text, epilog=examples or None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_level(p)
    return p


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_machine_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="machine config JSON (viam-server's shape)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LABELSIEVE_HOME", Path.home() / ".labelsieve")),
                   help="VIAM_HOME for modules; module data (weights caches) goes under it (default ~/.labelsieve)")
