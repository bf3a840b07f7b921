"""Sync closed capture files to any storage fsspec names (a folder, `s3://`, `gs://`, ...), keeping the capture folder's
layout (`<api>/<name>/<Method>/<file>.capture`); `viam://` goes to Viam's app instead (`labelsieve.cloud.sync`).

Each file goes through a crash-safe state machine; a process killed between any two steps loses and duplicates nothing,
because every step is redone or skipped on the next run by looking at what is there:

    final remote object equals the local file (size and MD5)  -> delete the local file (done before; killed after)
    final remote object exists but differs                    -> conflict: keep the local file, report it
    temporary object equals the local file                    -> move it to the final name (killed after the upload)
    otherwise                                                 -> upload to the temporary name, verify it, move, verify

The temporary name (`.<file>.<md5>.part`, hidden, not ending in `.capture`) is the only place a partial upload can exist:
a reader never sees half a file under a final name. A move is a rename on a folder and a server-side copy on object
stores, so the final object appears whole. The local file is deleted only after the final object is verified. `.prog`
files being written are never synced; stuck ones (their writer died) are finished first (`format.recover_stuck`).

Each file has a deadline (`timeout_s`, all its round trips together): a store that stops answering fails the file, which
stays local, and after three such failures in a row the run ends and says so. The worker left waiting on the store is a
daemon thread, abandoned as a kill would abandon it, so neither a run nor the process waits on the network. Destinations
are `Target`s (`target_for` picks one per URL; `FsspecTarget` for folders and object stores).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from tqdm import tqdm

from labelsieve.capture.format import CAPTURE_SUFFIX, recover_stuck
from labelsieve.errors import BackendUnavailable, InputError, LabelsieveError, SyncBusy

__all__ = ["DEFAULT_TIMEOUT_S", "FsspecTarget", "SyncBusy", "SyncReport", "Target", "sync", "target_for"]

log = logging.getLogger(__name__)
LOCK_NAME = ".sync.lock"
#: Per file, all its round trips together; a store that stops answering (a frozen server, a dead link) costs this much.
DEFAULT_TIMEOUT_S = 60.0
_GIVE_UP_AFTER = 3  # consecutive failures: the remote is likely down, so stop instead of failing every file slowly


class _Conflict(LabelsieveError):
    """The final remote name holds different content."""


@dataclass
class SyncReport:
    url: str
    uploaded: int = 0  # files uploaded and verified in this run, then deleted locally
    already_remote: int = 0  # files a killed earlier run had uploaded: verified, then deleted locally
    bytes_uploaded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, error); the local file is kept
    conflicts: list[str] = field(default_factory=list)  # relative paths whose remote name holds other content
    recovered: int = 0  # stuck `.prog` files (a killed writer's) finished before this run
    stopped: bool = False  # stopped early (asked to, or the remote kept failing); the rest waits for the next run

    @property
    def synced(self) -> int:
        return self.uploaded + self.already_remote

    def summary(self) -> str:
        parts = [f"synced {self.synced} files ({self.bytes_uploaded / 1e6:.1f} MB uploaded) to {self.url}"]
        if self.already_remote:
            parts.append(f"{self.already_remote} were already there")
        if self.recovered:
            parts.append(f"{self.recovered} stuck .prog files finished first")
        if self.failed:
            parts.append(f"{len(self.failed)} failed (kept locally; first: {self.failed[0][0]}: {self.failed[0][1]})")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} clash with other remote files (kept locally; first: {self.conflicts[0]})")
        if self.stopped:
            parts.append("stopped early; the rest goes on the next run")
        return ", ".join(parts)


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_md5(info: dict[str, Any]) -> str:
    """The MD5 a store reports without a download: S3's ETag of a single-part object, GCS's md5Hash; else ""."""
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if len(etag) == 32 and "-" not in etag:
        return etag.lower()
    md5 = info.get("md5Hash")
    return base64.b64decode(md5).hex() if isinstance(md5, str) else ""


def _state(fs: fsspec.AbstractFileSystem, path: str, size: int, md5: str) -> str:
    """"absent", "same" or "different": size first, then the store's MD5, then (no MD5, or an ETag that is not one, as
    with SSE-KMS) the bytes read back."""
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return "absent"
    if info.get("size") != size:
        return "different"
    if _stored_md5(info) == md5:
        return "same"
    return "same" if hashlib.md5(fs.cat_file(path), usedforsecurity=False).hexdigest() == md5 else "different"


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


class Target(Protocol):
    """Where a sync sends closed files: one class per kind of destination, chosen by `target_for`."""

    url: str

    def send(self, local: Path, rel: str) -> int:
        """Bring `local` (whose path under the capture folder is `rel`) to the destination and delete it locally once
        verified there; returns the bytes uploaded (0: it was already there). Raises `_Conflict` when the destination
        holds other content under that name. Runs in a worker thread; must be safe to kill at any moment."""
        ...


class FsspecTarget:
    """A folder or any fsspec store, through the crash-safe state machine above."""

    def __init__(self, url: str, capture_dir: Path) -> None:
        try:
            self.fs, root = url_to_fs(url)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its backend not installed
            raise InputError(f"cannot sync to {url}: {exc}") from None
        self.url, self.root = url, root.rstrip("/")
        if isinstance(self.fs, LocalFileSystem) and Path(self.root).resolve().is_relative_to(capture_dir.resolve()):
            raise InputError(f"{url} is inside {capture_dir}: the next sync would take its files for new captures")
        self.fs.invalidate_cache()  # another writer may have changed the remote since this instance last looked
        self._made: set[str] = set()

    def send(self, local: Path, rel: str) -> int:
        fs, remote = self.fs, f"{self.root}/{rel}"
        size, md5 = local.stat().st_size, _md5_file(local)
        parent, name = remote.rsplit("/", 1)
        temp = f"{parent}/.{name}.{md5}.part"
        state = _state(fs, remote, size, md5)
        if state == "different":
            raise _Conflict(remote)
        uploaded = 0
        if state == "absent":
            if _state(fs, temp, size, md5) != "same":
                if parent not in self._made:
                    fs.makedirs(parent, exist_ok=True)
                    self._made.add(parent)
                fs.put_file(str(local), temp)
                if _state(fs, temp, size, md5) != "same":
                    raise OSError(f"the upload to {temp} does not match the local file")
                uploaded = size
            fs.mv(temp, remote)
            if _state(fs, remote, size, md5) != "same":
                raise OSError(f"{remote} does not match the local file after the move")
        _remove(fs, temp)  # gone after a move already; left by a run killed mid-move otherwise
        local.unlink()
        return uploaded


def target_for(url: str, capture_dir: Path) -> Target:
    """The one place a destination URL picks its target."""
    return FsspecTarget(url, capture_dir)


def _in_daemon_thread(work: Callable[[], int]) -> Future[int]:
    """Run `work` in a thread that never holds up the process's exit: a store that stops answering must not either."""
    future: Future[int] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 -- handed to the waiting run, which reports it
                future.set_exception(exc)

    threading.Thread(target=run, name="sync", daemon=True).start()
    return future


@contextmanager
def _exclusive(capture_dir: Path) -> Iterator[None]:
    """One sync per capture folder at a time, across processes (the runtime's periodic sync and `labelsieve sync`)."""
    with open(capture_dir / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncBusy(f"another process is syncing {capture_dir}; try again when it is done") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _record(report: SyncReport, rel: str, outcome: Future[int]) -> bool:
    """Add one file's outcome to the report; True when it failed."""
    try:
        uploaded = outcome.result()
    except _Conflict as exc:
        log.error("%s: %s already holds a different file; kept locally", rel, exc)
        report.conflicts.append(rel)
    except Exception as exc:  # noqa: BLE001 -- each fsspec backend raises its own kinds; kept and reported
        log.warning("%s: sync failed: %s: %s", rel, type(exc).__name__, exc)
        report.failed.append((rel, f"{type(exc).__name__}: {exc}"))
        return True
    else:
        report.bytes_uploaded += uploaded
        if uploaded:
            report.uploaded += 1
        else:
            report.already_remote += 1
    return False


def sync(capture_dir: Path, url: str, *, progress: bool = False, workers: int = 4, timeout_s: float = DEFAULT_TIMEOUT_S,
         stop: Future[None] | None = None) -> SyncReport:
    """Upload every closed `.capture` file under `capture_dir` to `url`, oldest first, `workers` files at a time (each
    file costs several round trips to an object store), deleting each once verified.

    Safe to kill and re-run at any moment. A file that fails, or that the store does not finish within `timeout_s`, is
    kept and reported; `stop` (a future a caller completes) ends the run at once, leaving the files in flight to the next
    run as a kill would. Raises InputError for a missing folder or an unusable URL, SyncBusy when another process syncs
    it, BackendUnavailable when the store answers nothing."""
    if not capture_dir.is_dir():
        raise InputError(f"{capture_dir} is not a folder")
    if url.startswith("viam://"):  # Viam's app: uploaded as viam-server's data manager does (labelsieve.cloud.sync)
        from labelsieve.cloud.sync import sync_to_viam

        stopped = threading.Event()  # the Viam syncer waits on an event between retries
        if stop is not None:
            stop.add_done_callback(lambda _: stopped.set())
        with _exclusive(capture_dir):
            recover_stuck(capture_dir)
            return sync_to_viam(capture_dir, url, progress=progress, stop=stopped)
    target = target_for(url, capture_dir)
    report = SyncReport(url)
    stop = stop or Future()
    with _exclusive(capture_dir):
        recovered = recover_stuck(capture_dir)
        report.recovered = recovered.get("recovered", 0) + recovered.get("cut", 0)
        files = sorted(capture_dir.rglob(f"*{CAPTURE_SUFFIX}"), key=lambda p: (p.name, p))  # names are capture times
        sizes = {path: path.stat().st_size for path in files}
        queue = iter(files)
        in_flight: dict[Future[int], tuple[str, int, float]] = {}  # -> (relative path, size, deadline)
        failures_in_a_row = 0

        def stopping() -> bool:
            return stop.done() or failures_in_a_row >= _GIVE_UP_AFTER

        with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="sync", disable=not progress) as bar:
            while True:
                while len(in_flight) < max(1, workers) and not stopping() and (path := next(queue, None)):
                    rel = path.relative_to(capture_dir).as_posix()
                    work = _in_daemon_thread(partial(target.send, path, rel))
                    in_flight[work] = (rel, sizes[path], time.monotonic() + timeout_s)
                if not in_flight or stop.done():
                    break
                next_deadline = min(deadline for _, _, deadline in in_flight.values())
                waiting: list[Future[Any]] = [*in_flight, stop]
                done, _ = wait(waiting, timeout=max(0.0, next_deadline - time.monotonic()),
                               return_when=FIRST_COMPLETED)
                for outcome in done - {stop}:
                    rel, size, _ = in_flight.pop(outcome)
                    failures_in_a_row = failures_in_a_row + 1 if _record(report, rel, outcome) else 0
                    bar.update(size)
                for outcome, (rel, size, deadline) in list(in_flight.items()):
                    if deadline <= time.monotonic():  # left running (it is safe to kill); the file stays local
                        del in_flight[outcome]
                        log.warning("%s: no answer from %s in %g s", rel, url, timeout_s)
                        report.failed.append((rel, f"no answer from the store in {timeout_s:g} s"))
                        failures_in_a_row += 1
                        bar.update(size)
        report.stopped = bool(in_flight) or next(queue, None) is not None
    if failures_in_a_row >= _GIVE_UP_AFTER and not report.synced:
        raise BackendUnavailable(f"cannot sync to {url}: {report.failed[0][1]}; {len(files)} files kept locally")
    return report
