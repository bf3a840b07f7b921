"""Sync closed capture files to Viam's app as viam-server's data manager does (`sync_url: "viam://"`), annotations
included, so captured boxes reach the Data tab.

Per file, as rdk's sync: UploadMetadata from the header (part id, component, method, type, method parameters, tags,
extension from the mime type), one DataCaptureUpload per binary reading up to 1 MB and a stream of 64 KiB chunks above,
one for all the readings of a tabular file. The local file is deleted only after the app said yes. A file the app
rejects as invalid (INVALID_ARGUMENT), or one that is not a capture file, moves to `<capture_dir>/failed/<relative path>`
and is never retried; an empty one is deleted. While the app cannot be reached, the same file is retried after 0.2 s,
0.4 s, ... (at most 60 s apart) until `give_up_after_s` has passed; then the run ends and every file waits locally.

Killed at any moment, nothing is lost: a file is deleted only after its upload was confirmed. Sending twice is avoided
too where the app allows: a hidden `.<file>.sending` marker is written before an upload and removed with the file, so a
run that finds a marker knows an earlier upload's answer was lost and first asks the app whether that capture (same
part, component, method and request time) is already there. Only when the key may not read data (a machine key without
that right) is such a file sent again: the upload has no idempotency key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm
from viam.proto.app.datasync import DataType, SensorData, UploadMetadata
from viam.utils import create_filter

from labelsieve.capture.format import CAPTURE_SUFFIX, CorruptCaptureError, read_capture
from labelsieve.capture.sync import SyncReport
from labelsieve.cloud.viam import Cloud, ViamUrl, connect, parse_url
from labelsieve.errors import BackendError, ConfigError, InputError, LabelsieveError
from labelsieve.retry import backoff

__all__ = ["FAILED_DIR", "sync_to_viam", "viam_sync_target"]

log = logging.getLogger(__name__)
FAILED_DIR = "failed"
_MARK = ".sending"
_MAX_BACKOFF_S = 60.0
_EXTENSIONS = {"image/jpeg": ".jpeg", "image/png": ".png"}  # viam-server replaces the extension from the mime type
T = TypeVar("T")


class _Stopped(LabelsieveError):
    """`stop` was set while waiting to retry (never leaves this module)."""


def viam_sync_target(url: str) -> ViamUrl:
    """The checked `sync_url`: it must name a part (in the URL or VIAM_MACHINE_PART_ID), and a key must be set."""
    target = parse_url(url, kinds=("",))
    if not target.part:
        raise InputError(f"{url}: which machine part do the uploads belong to? Add ?part=<part id> or set "
                         "VIAM_MACHINE_PART_ID (viam-server sets it for modules)")
    if not os.environ.get("VIAM_API_KEY") or not os.environ.get("VIAM_API_KEY_ID"):
        raise InputError(f"{url}: set VIAM_API_KEY and VIAM_API_KEY_ID (a machine or organization API key)")
    return target


def _requests(path: Path, part: str) -> tuple[UploadMetadata, list[list[SensorData]]]:
    capture = read_capture(path)
    h = capture.header
    metadata = UploadMetadata(part_id=part, component_type=h.component_type, component_name=h.component_name,
                              method_name=h.method_name, type=h.type, method_parameters=h.method_parameters,
                              tags=h.tags, file_extension=_EXTENSIONS.get(h.mime_type, h.file_extension),
                              mime_type=h.mime_type)
    readings = list(capture.readings)
    binary = h.type == DataType.DATA_TYPE_BINARY_SENSOR
    return metadata, ([[r] for r in readings] if binary else [readings] if readings else [])


async def _already_there(cloud: Cloud, metadata: UploadMetadata, reading: SensorData) -> bool:
    """Whether the app holds this capture already (asked only after an upload whose answer was lost)."""
    when = reading.metadata.time_requested.ToDatetime()
    query = create_filter(part_id=metadata.part_id, component_name=metadata.component_name,
                          method=metadata.method_name, start_time=when - timedelta(milliseconds=1),
                          end_time=when + timedelta(milliseconds=1), mime_type=[metadata.mime_type] if metadata.mime_type else None)
    try:
        async for item in cloud.metadata(query):
            if item.metadata.time_requested == reading.metadata.time_requested and \
                    item.metadata.file_size_bytes in (0, len(reading.binary)):
                return True
    except ConfigError as exc:
        log.warning("cannot ask %s whether an interrupted upload arrived (%s); sending it again", cloud.app, exc)
    return False


class _Syncer:
    def __init__(self, capture_dir: Path, target: ViamUrl, report: SyncReport, stop: threading.Event | None,
                 first_backoff_s: float, give_up_after_s: float) -> None:
        self.capture_dir, self.target, self.report, self.stop = capture_dir, target, report, stop
        self.first_backoff_s, self.give_up_after_s = first_backoff_s, give_up_after_s

    async def retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` until it succeeds; a BackendError (unreachable, timed out, failing) waits and tries again."""
        attempt, waited = 0, 0.0
        while True:
            delay = backoff(attempt, _MAX_BACKOFF_S, self.first_backoff_s)
            try:
                return await work()
            except BackendError as exc:
                if waited >= self.give_up_after_s:
                    raise
                if waited == 0.0:
                    log.warning("%s; retrying for up to %g s", exc, self.give_up_after_s)
                if self.stop is None:
                    await asyncio.sleep(delay)
                elif await asyncio.to_thread(self.stop.wait, delay):
                    raise _Stopped from None
                waited += delay
                attempt += 1

    def set_aside(self, path: Path, reason: str) -> None:
        rel = path.relative_to(self.capture_dir)
        target = self.capture_dir / FAILED_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        log.error("%s: %s; moved to %s, not retried", rel, reason, target)
        self.report.failed.append((rel.as_posix(), f"{reason} (moved to {FAILED_DIR}/)"))

    async def one(self, cloud: Cloud, path: Path) -> None:
        marker = path.with_name(f".{path.name}{_MARK}")
        try:
            metadata, requests = _requests(path, self.target.part)
        except CorruptCaptureError as exc:
            self.set_aside(path, str(exc))
            marker.unlink(missing_ok=True)
            return
        size = path.stat().st_size
        if requests and marker.exists() and requests[0][0].WhichOneof("data") == "binary" and \
                await self.retrying(lambda: _already_there(cloud, metadata, requests[0][0])):
            self.report.already_remote += 1
        elif requests:
            marker.touch()
            try:
                for readings in requests:
                    await self.retrying(functools.partial(cloud.upload, metadata, readings))
            except InputError as exc:
                self.set_aside(path, str(exc))
                marker.unlink()
                return
            self.report.uploaded += 1
            self.report.bytes_uploaded += size
        path.unlink()
        marker.unlink(missing_ok=True)

    async def run(self, files: Sequence[Path], progress: bool) -> None:
        async with AsyncExitStack() as stack:
            cloud = await self.retrying(lambda: stack.enter_async_context(connect()))
            with tqdm(total=len(files), unit="file", desc="sync to Viam", disable=not progress) as bar:
                for path in files:
                    if self.stop is not None and self.stop.is_set():
                        self.report.stopped = True
                        return
                    await self.one(cloud, path)
                    bar.update()


def sync_to_viam(capture_dir: Path, url: str, *, progress: bool = False, stop: threading.Event | None = None,
                 first_backoff_s: float = 0.2, give_up_after_s: float = 300.0) -> SyncReport:
    """Upload every closed `.capture` file under `capture_dir` (not `failed/`) to Viam's app, oldest first, deleting
    each once the app confirmed it. Raises BackendUnavailable when the app stays unreachable, ConfigError for a refused
    key; the files not sent stay for the next run."""
    target = viam_sync_target(url)
    report = SyncReport(url)
    files = sorted((p for p in capture_dir.rglob(f"*{CAPTURE_SUFFIX}")
                    if p.relative_to(capture_dir).parts[0] != FAILED_DIR), key=lambda p: (p.name, p))
    for marker in capture_dir.rglob(f".*{CAPTURE_SUFFIX}{_MARK}"):  # its file was sent and deleted, then the run died
        if not marker.with_name(marker.name[1:-len(_MARK)]).exists():
            marker.unlink()
    if not files:
        return report  # nothing to send: no connection (the data manager asks every few seconds)
    syncer = _Syncer(capture_dir, target, report, stop, first_backoff_s, give_up_after_s)
    try:
        asyncio.run(syncer.run(files, progress))
    except _Stopped:
        report.stopped = True
    return report
