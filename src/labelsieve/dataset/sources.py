"""Where capture files come from: a local folder or a synced one at any fsspec URL (`s3://bucket/capture`, `gs://...`).

Closed `.capture` files never change (viam-server renames `.prog` only once a file is complete), so a remote file is
downloaded once into the dataset's cache and a rebuild after a crash or with new data fetches only what is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import fsspec

from labelsieve.capture.format import CAPTURE_SUFFIX
from labelsieve.errors import InputError
from labelsieve.files import write_bytes_atomic

__all__ = ["SourceFile", "download_dataset", "list_captures", "read_source"]


@dataclass(frozen=True)
class SourceFile:
    url: str
    size: int

    @property
    def local(self) -> bool:
        return "://" not in self.url


def list_captures(source: str) -> list[SourceFile]:
    """Every `.capture` file under `source` (a folder, a URL, or one file), sorted by path; a `viam://` URL or a
    `viam dataset export` folder as the capture files `labelsieve.cloud` makes of it."""
    from labelsieve.cloud import capture_sources, is_cloud_source

    if is_cloud_source(source):
        return [SourceFile(str(path), path.stat().st_size) for path in capture_sources(source)]
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
        data: bytes = remote.read()
    cache.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(cached, data)
    return data


def download_dataset(url: str, cache: Path) -> Path:
    """A dataset version at `url` (the version folder, or a dataset root for its latest version), downloaded once into
    `cache/<version id>` and returned as a local folder."""
    fs, root = fsspec.core.url_to_fs(url.rstrip("/"))
    try:
        if not fs.exists(f"{root}/version.json"):
            found = [p for p in fs.ls(root, detail=False) if re.fullmatch(r"v\d+", p.rstrip("/").rsplit("/", 1)[-1])
                     and fs.exists(f"{p}/version.json")]
            if not found:
                raise InputError(f"{url}: no dataset version here (no version.json, no v1, v2, ...)")
            root = max(found, key=lambda p: int(p.rstrip("/").rsplit("/", 1)[-1][1:]))
        version_id = str(json.loads(fs.cat_file(f"{root}/version.json"))["id"])
        local = cache / version_id[:16]
        if not (local / "version.json").is_file():
            partial = cache / f".{version_id[:16]}-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            fs.get(f"{root}/", str(partial) + "/", recursive=True)
            os.replace(partial, local)
    except OSError as exc:
        raise InputError(f"{url}: cannot download the dataset: {exc}") from exc
    return local
