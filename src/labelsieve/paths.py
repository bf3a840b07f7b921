"""Where labelsieve keeps its files, decided in one place."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home", "module_data"]


def home() -> Path:
    """labelsieve's folder (the runtime's data dir, datasets, models): `$LABELSIEVE_HOME`, else ~/.labelsieve."""
    return Path(os.environ.get("LABELSIEVE_HOME") or Path.home() / ".labelsieve")


def module_data() -> Path:
    """Where a stage keeps caches: in a module process its own data folder (`$VIAM_MODULE_DATA`, set by the runtime and
    by viam-server), elsewhere `home()`."""
    return Path(os.environ.get("VIAM_MODULE_DATA") or home())
