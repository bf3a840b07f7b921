"""Viam's capture file format, exactly as viam-server's data manager writes it (read from rdk's source):

- folder `<capture_dir>/<api>/<resource short name>/<Method>/`, every ':' replaced by '_'
  (`rdk_service_vision/labeler/CaptureAllFromCamera`);
- file name: local time `2006-01-02T15:04:05.000000Z07:00` with ':' -> '_', written as `.prog`, renamed to `.capture`
  once closed, so a reader never sees half a file under the final name;
- framing: each message is a uvarint length then the protobuf bytes (Go's `pbutil.WriteDelimited`); the first message is
  the header `DataCaptureMetadata`, each following one a `SensorData`.

A writer holds an exclusive `flock` on its `.prog` file until the rename, so a `.prog` whose lock is free and which has not
changed for `STUCK_AFTER_S` belongs to a writer that died (a kill, a power cut): `recover_stuck` finishes it, as
viam-server's sync treats a `.prog` that stopped changing as stuck and syncs it.

Provenance (which proposer and verifier agreed on a box, and how strongly) rides in `BoundingBox.id` as compact JSON: a
field viam-server leaves empty, so files stay readable by any Viam tool and files written by viam-server simply carry none.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from google.protobuf.message import DecodeError
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve.errors import InputError

__all__ = ["CaptureFile", "CorruptCaptureError", "capture_dir_for", "capture_file_name", "decode_provenance",
           "encode_provenance", "read_capture", "recover_stuck", "write_capture"]

log = logging.getLogger(__name__)

CAPTURE_SUFFIX, PROGRESS_SUFFIX = ".capture", ".prog"
#: A `.prog` unchanged this long, with no writer holding its lock, is stuck (its writer died).
STUCK_AFTER_S = 10.0
_PROVENANCE_TAG = "ls1:"  # versioned, so an id written by anything else is never mistaken for ours


class CorruptCaptureError(InputError):
    """A capture file that is truncated or not Viam's format; readers report it and go on with the next file."""


@dataclass(frozen=True)
class CaptureFile:
    path: Path
    header: DataCaptureMetadata
    readings: tuple[SensorData, ...]


def capture_dir_for(capture_dir: Path, api: str, name: str, method: str) -> Path:
    return capture_dir / api.replace(":", "_") / name.replace(":", "_") / method


def capture_file_name(now: datetime | None = None) -> str:
    """viam-server's name for a new file (without suffix): local time with microseconds and offset, ':' -> '_'."""
    now = (now or datetime.now()).astimezone()
    offset = now.strftime("%z")
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return (now.strftime("%Y-%m-%dT%H:%M:%S.%f") + zone).replace(":", "_")


def _frame(message: Any) -> bytes:
    body: bytes = message.SerializeToString()
    length: bytes = _VarintBytes(len(body))
    return length + body


def _new_progress_file(folder: Path, name: str | None) -> tuple[Path, Path, BinaryIO]:
    """Open a fresh `.prog` file, locked for writing. Without a given name, a name already taken (two images in one
    microsecond, as GetImages can produce) moves on by a microsecond: viam-server would overwrite the first file there;
    we never do."""
    now = datetime.now()
    while True:
        stem = name or capture_file_name(now)
        progress, final = folder / f"{stem}{PROGRESS_SUFFIX}", folder / f"{stem}{CAPTURE_SUFFIX}"
        if name or not final.exists():
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if name else os.O_EXCL)
            try:
                out = os.fdopen(os.open(progress, flags, 0o600), "wb")  # viam-server's 0600
            except FileExistsError:
                pass
            else:
                fcntl.flock(out, fcntl.LOCK_EX)  # released when closed, or when this process dies
                return progress, final, out
        now += timedelta(microseconds=1)


def write_capture(folder: Path, header: DataCaptureMetadata, readings: Iterable[SensorData], name: str | None = None) -> Path:
    """Write one closed capture file: `.prog` first, fsync, then rename to `.capture`. Returns the final path.

    A failed write (a full disk) removes its `.prog` and raises: nothing half-written stays behind."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # viam-server's MkdirAll(dir, 0o700)
    progress, final, out = _new_progress_file(folder, name)
    try:
        with out:
            out.write(_frame(header))
            for reading in readings:
                out.write(_frame(reading))
            out.flush()
            os.fsync(out.fileno())
            os.replace(progress, final)  # under the lock, so a recovery never sees this file half renamed
    except BaseException:
        progress.unlink(missing_ok=True)
        raise
    return final


def _whole_messages(data: bytes) -> tuple[int, int]:
    """(bytes, count) of the longest prefix of whole, parseable messages with a header first: what a torn write kept."""
    position = count = 0
    while position < len(data):
        try:
            size, start = _DecodeVarint(data, position)
        except (IndexError, DecodeError):
            break
        if start + size > len(data):
            break
        try:
            if count == 0:
                if not DataCaptureMetadata.FromString(data[start : start + size]).component_type:
                    break
            else:
                SensorData.FromString(data[start : start + size])
        except DecodeError:
            break
        position, count = start + size, count + 1
    return position, count


Recovery = Literal["recovered", "cut", "removed", "busy", "young"]


def _recover(path: Path, now: float, stuck_after_s: float) -> Recovery:
    try:
        f = open(path, "r+b")  # held open: the lock covers the checks and the rename
    except FileNotFoundError:
        return "busy"  # renamed or removed meanwhile: its writer finished it
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"  # a live writer, in this process or another
        stat = os.fstat(f.fileno())
        try:
            if os.stat(path).st_ino != stat.st_ino:
                return "busy"
        except FileNotFoundError:
            return "busy"
        if now - stat.st_mtime < stuck_after_s:
            return "young"  # maybe a writer that takes no lock (viam-server itself): wait until it stops changing
        data = f.read()
        keep, messages = _whole_messages(data)
        if messages < 2:  # nothing, or a header without a reading: no data to keep
            path.unlink()
            return "removed"
        if keep < len(data):
            f.truncate(keep)
        os.fsync(f.fileno())
        final = path.with_suffix(CAPTURE_SUFFIX)
        try:
            os.link(path, final)  # never over an existing capture
        except FileExistsError:
            os.link(path, final.with_name(f"{path.stem}_recovered{CAPTURE_SUFFIX}"))
        path.unlink()
        return "cut" if keep < len(data) else "recovered"


def recover_stuck(capture_dir: Path, stuck_after_s: float = STUCK_AFTER_S, now: float | None = None) -> dict[str, int]:
    """Finish every stuck `.prog` under `capture_dir`: whole messages become a `.capture` file (a torn last message is
    cut off), files without a reading are removed. A `.prog` being written (its lock held) or changed within
    `stuck_after_s` is left alone. Returns how many files each outcome had."""
    counts: dict[str, int] = {}
    when = time.time() if now is None else now
    for path in sorted(capture_dir.rglob(f"*{PROGRESS_SUFFIX}")):
        try:
            outcome = _recover(path, when, stuck_after_s)
        except OSError as exc:  # a full disk, a foreign file's permissions: the next pass tries again
            log.warning("%s: cannot finish this stuck capture file yet: %s", path, exc)
            continue
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ("recovered", "cut", "removed"):
            log.info("%s: stuck in-progress capture file %s", path, {"recovered": "finished", "cut":
                     "finished without its torn last message", "removed": "removed (it held no reading)"}[outcome])
    return counts


def _messages(data: bytes, where: str) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        try:
            size, position = _DecodeVarint(data, position)
        except (IndexError, DecodeError) as exc:
            raise CorruptCaptureError(f"{where}: bad length prefix at byte {position}") from exc
        if position + size > len(data):
            raise CorruptCaptureError(f"{where}: truncated: a message of {size} bytes at byte {position}, "
                                      f"but the file ends at {len(data)}")
        yield data[position : position + size]
        position += size


def read_capture(path: Path, data: bytes | None = None) -> CaptureFile:
    """Parse one `.capture` file (from disk, or its bytes when they came from remote storage)."""
    where = str(path)
    data = path.read_bytes() if data is None else data
    header = DataCaptureMetadata()
    readings: list[SensorData] = []
    try:
        for i, raw in enumerate(_messages(data, where)):
            if i == 0:
                header.ParseFromString(raw)
            else:
                reading = SensorData()
                reading.ParseFromString(raw)
                readings.append(reading)
    except DecodeError as exc:
        raise CorruptCaptureError(f"{where}: not a Viam capture file: {exc}") from exc
    if not header.component_type:
        raise CorruptCaptureError(f"{where}: empty, or no capture header")
    return CaptureFile(path, header, tuple(readings))


def encode_provenance(provenance: dict[str, Any]) -> str:
    return _PROVENANCE_TAG + json.dumps(provenance, separators=(",", ":"), sort_keys=True)


def decode_provenance(box_id: str) -> dict[str, Any] | None:
    """The provenance a labelsieve filter attached to a box, or None (a file from viam-server, or a foreign id)."""
    if not box_id.startswith(_PROVENANCE_TAG):
        return None
    try:
        value = json.loads(box_id[len(_PROVENANCE_TAG) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
