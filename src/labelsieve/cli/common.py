"""Arguments several verbs share, spelt once."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsieve.paths import home

__all__ = ["add_data_dir", "add_log_level", "add_machine_config", "verb"]


def verb(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str,
         examples: str = "") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text, epilog=examples or None,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_level(p)
    return p


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_machine_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="machine config JSON (viam-server's shape)")
    add_data_dir(p)
    p.add_argument("--packages-dir", type=lambda v: Path(v).expanduser().resolve(), default=Path("~/.viam/packages"),
                   metavar="DIR",
                   help="where ${packages.ml_model.NAME} placeholders are found, in viam-server's layout "
                        "(DIR/data/ml_model/<package>-<version>; default ~/.viam/packages)")


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=home(),
                   help="VIAM_HOME for modules; module data (weights caches) goes under it (default ~/.labelsieve)")
