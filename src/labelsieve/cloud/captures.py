"""Viam data as local `.capture` files, so every capture reader (dataset build, the backlog job, eval) takes `viam://`
sources and `viam dataset export` folders unchanged.

Each binary datum becomes one capture file in the cache (`$LABELSIEVE_HOME/viam/<app>/captures/`), named by its binary
data id and written atomically: a header like viam-server's ReadImage capture (from the capture metadata), one reading
with the image, its times and its boxes. A re-run pages the metadata again (cheap), downloads only images not cached yet,
and rewrites a cached file whose boxes changed in the app. The cache's `index/<image sha256[:24]>` remembers which
binary datum an image is, so `push` labels that datum instead of uploading the image again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tqdm import tqdm
from viam.proto.app.data import BinaryData, BinaryMetadata
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData, SensorMetadata

from labelsieve.capture.format import CAPTURE_SUFFIX, CorruptCaptureError, read_capture, write_capture
from labelsieve.cloud.viam import Cloud, app_address, connect, parse_url
from labelsieve.errors import BackendError, BackendTimeout, BackendUnavailable
from labelsieve.files import write_atomic
from labelsieve.paths import home

__all__ = ["Origin", "cache_lock", "cache_root", "image_key", "lookup_origin", "pull", "remember_origin"]

log = logging.getLogger(__name__)
_BATCH = 20  # images per BinaryDataByIDs: a page of full-size images stays well under message limits


def cache_root() -> Path:
    return home() / "viam" / quote(app_address(), safe="")


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One writer of the cache at a time across processes: files are written under fixed names (`<id>.prog`)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def image_key(data: bytes) -> str:
    """The name a dataset version gives an image (its sha256, 24 hex digits), and so the key of the origin index."""
    return hashlib.sha256(data).hexdigest()[:24]


@dataclass(frozen=True)
class Origin:
    binary_data_id: str
    organization_id: str


def remember_origin(key: str, origin: Origin, root: Path | None = None) -> None:
    index = (root or cache_root()) / "index"
    index.mkdir(parents=True, exist_ok=True)
    write_atomic(index / key, json.dumps({"binary_data_id": origin.binary_data_id,
                                         "organization_id": origin.organization_id}))


def lookup_origin(key: str, root: Path | None = None) -> Origin | None:
    path = (root or cache_root()) / "index" / key
    return Origin(**json.loads(path.read_text())) if path.is_file() else None


def _header(meta: BinaryMetadata) -> DataCaptureMetadata:
    c = meta.capture_metadata
    return DataCaptureMetadata(component_type=c.component_type, component_name=c.component_name,
                               method_name=c.method_name, type=DataType.DATA_TYPE_BINARY_SENSOR,
                               method_parameters=c.method_parameters, file_extension=meta.file_ext, tags=c.tags,
                               mime_type=c.mime_type)


def _reading(meta: BinaryMetadata, data: bytes) -> SensorData:
    return SensorData(metadata=SensorMetadata(time_requested=meta.time_requested, time_received=meta.time_received,
                                              annotations=meta.annotations), binary=data)


def _cached(path: Path) -> SensorData | None:
    if not path.is_file():
        return None
    try:
        readings = read_capture(path).readings
    except CorruptCaptureError:
        return None
    return readings[0] if readings else None


def _write(folder: Path, meta: BinaryMetadata, data: bytes) -> Path:
    name = quote(meta.binary_data_id, safe="")
    path = write_capture(folder, _header(meta), [_reading(meta, data)], name=name)
    remember_origin(image_key(data), Origin(meta.binary_data_id, meta.capture_metadata.organization_id), folder.parent)
    return path


def _refresh(folder: Path, metas: Sequence[BinaryMetadata]) -> tuple[list[Path], list[BinaryMetadata]]:
    """Each datum's cache file, and the data not cached yet; a cached file whose boxes changed in the app is rewritten
    (its image cannot have changed)."""
    paths, missing = [], []
    for meta in metas:
        path = folder / (quote(meta.binary_data_id, safe="") + CAPTURE_SUFFIX)
        paths.append(path)
        cached = _cached(path)
        if cached is None:
            missing.append(meta)
        elif cached.metadata.annotations != meta.annotations:
            _write(folder, meta, cached.binary)
    return paths, missing


async def _download(cloud: Cloud, ids: list[str]) -> Sequence[BinaryData]:
    """The images of `ids` in one call; when the batch fails (one image too large for a call: the app answers
    RESOURCE_EXHAUSTED), one by one, leaving out (and logging) those that still fail."""
    try:
        return await cloud.call(cloud.data.binary_data_by_ids(ids, include_binary_data=True))
    except (BackendUnavailable, BackendTimeout):
        raise
    except BackendError as exc:
        if len(ids) == 1:
            log.warning("%s: not downloaded: %s", ids[0], exc)
            return []
    return [item for i in ids for item in await _download(cloud, [i])]


async def _pull(url: str, progress: bool) -> list[Path]:
    parsed = parse_url(url)
    folder = cache_root() / "captures"
    async with connect() as cloud:
        dataset = await cloud.dataset_id(parsed.dataset, parsed.org) if parsed.kind == "dataset" else ""
        with tqdm(desc=f"listing {url}", unit="image", disable=not progress) as listing:
            metas = []
            async for item in cloud.metadata(parsed.filter(dataset)):
                metas.append(item.metadata)
                listing.update()
        paths, missing = await asyncio.to_thread(_refresh, folder, metas)
        with tqdm(total=len(metas), initial=len(metas) - len(missing), desc=f"pulling {url}", unit="image",
                  disable=not progress) as bar:
            for start in range(0, len(missing), _BATCH):
                batch = [m.binary_data_id for m in missing[start:start + _BATCH]]
                for item in await _download(cloud, batch):
                    await asyncio.to_thread(_write, folder, item.metadata, item.binary)
                bar.update(len(batch))
    kept = [p for p in paths if p.is_file()]
    if len(kept) < len(paths):
        log.warning("%s: %d of %d images could not be downloaded (too large for one call, or deleted meanwhile); "
                    "they are left out of this build",
                    url, len(paths) - len(kept), len(paths))
    return kept


def pull(url: str, *, progress: bool = True) -> list[Path]:
    """The capture files of every image a `viam://` URL names, downloading what the cache lacks. Safe to interrupt:
    each file is complete or absent, and the next run goes on from there."""
    try:
        with cache_lock():
            return asyncio.run(_pull(url, progress))
    except BackendError as exc:
        raise type(exc)(f"{url}: {exc}") from exc
