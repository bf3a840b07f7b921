"""Where capture files come from: a local folder or a synced one at any fsspec URL (`s3://bucket/capture`, `gs://...`).

Closed `.capture` files never change (viam-server renames `.prog` only once a file is complete), so a remote file is
downloaded once into the dataset's cache and a rebuild after a crash or with new data fetches only what is new.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import fsspec

from labelsieve.capture.format import CAPTURE_SUFFIX
from labelsieve.errors import InputError

__all__ = ["SourceFile", "list_captures", "read_source"]


@dataclass(frozen=True)
class SourceFile:
    url: str
    size: int

    @property
    def local(self) -> bool:
        return "://" not in self.url


def list_captures(source: str) -> list[SourceFile]:
    """Every `.capture` file under `source` (a folder, a URL, or one file), sorted by path."""
    fs, root = fsspec.core.url_to_fs(source)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    try:
        if not fs.exists(root):
            raise InputError(f"{source}: no such folder or file")
        found = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, detail=True)
    except (OSError, PermissionError) as exc:  # s3fs raises OSError/PermissionError for auth and connection failures
        raise InputError(f"{source}: cannot list it: {exc}") from exc
    return [SourceFile(path if local else fs.unstrip_protocol(path), int(info.get("size") or 0))
            for path, info in sorted(found.items()) if path.endswith(CAPTURE_SUFFIX)]


def read_source(file: SourceFile, cache: Path) -> bytes:
    """The file's bytes; a remote file through `cache` (written atomically, so a crash never leaves half a file)."""
    if file.local:
        return Path(file.url).read_bytes()
    cached = cache / (hashlib.sha256(f"{file.url}\0{file.size}".encode()).hexdigest()[:32] + CAPTURE_SUFFIX)
    if cached.exists():
        return cached.read_bytes()
    with fsspec.open(file.url, "rb") as remote:
        data = remote.read()
    cache.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, cached)
    return data
