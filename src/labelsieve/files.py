"""Atomic file writes: a reader (a runtime watching its config, a browser opening a report) sees the old file or the new
one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_bytes_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` (same filesystem), then rename it over `path`. The file keeps the
    mode it had (a machine config another user's runtime reads stays readable); a new one gets 0644, not mkstemp's 0600."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`write_atomic` for bytes. A failed write leaves no temporary file behind."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
