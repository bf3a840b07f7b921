"""What the package ships beside its code: the Viam modules' shells and the sample picture, found through the installed
package (`importlib.resources`), not by walking up to a source checkout, so `labelsieve demo` and `deploy --create`
work from a wheel or the registry tarball as they do from the repository. In a checkout `_shipped/` holds links to
`modules/` and `configs/samples/`; a built wheel holds copies (pyproject's package-data)."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["module_entry", "sample_picture", "shipped"]


def shipped(*parts: str) -> Path:
    return Path(str(files("labelsieve"))).joinpath("_shipped", *parts)


def sample_picture() -> Path:
    return shipped("samples", "grace_hopper.jpg")


def module_entry(folder: str) -> dict[str, Any]:
    """A machine config's `modules` entry for `modules/<folder>` (e.g. `fast_detector`), run by this interpreter: the
    shells' own lookup finds a checkout's `.venv`, which an installed package has not."""
    return {"type": "local", "name": folder.replace("_", "-"), "executable_path": str(shipped("modules", folder, "run.sh")),
            "env": {"LABELSIEVE_PYTHON": sys.executable}}
