"""Numbered version folders (`v1`, `v2`, ...) side by side under one root, as datasets and models keep them.

A version is made complete in a staging folder beside them and renamed into place under the root's lock (`ROOT/.lock`),
so two writers never take one number and a reader never sees half a version under a real name.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked", "next_version", "version_dirs"]

_NAME = re.compile(r"v(\d+)")


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the root's lock: one writer at a time makes, names or removes versions."""
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _numbered(root: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), child) for child in (root.iterdir() if root.is_dir() else ())
                  if (m := _NAME.fullmatch(child.name)))


def version_dirs(root: Path) -> list[Path]:
    """Every `vN` folder under `root`, oldest (lowest N) first."""
    return [path for _, path in _numbered(root) if path.is_dir()]


def next_version(root: Path) -> Path:
    """The folder the next version takes, past every `vN` name in use (a stray file too); call under `locked(root)`."""
    return root / f"v{max((n for n, _ in _numbered(root)), default=0) + 1}"
