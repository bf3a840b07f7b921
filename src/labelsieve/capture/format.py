"""Viam's capture file format, exactly as viam-server's data manager writes it (read from rdk's source):

- folder `<capture_dir>/<api>/<resource short name>/<Method>/`, every ':' replaced by '_'
  (`rdk_service_vision/labeler/CaptureAllFromCamera`);
- file name: local time `2006-01-02T15:04:05.000000Z07:00` with ':' -> '_', written as `.prog`, renamed to `.capture`
  once closed, so a reader never sees half a file under the final name;
- framing: each message is a uvarint length then the protobuf bytes (Go's `pbutil.WriteDelimited`); the first message is
  the header `DataCaptureMetadata`, each following one a `SensorData`.

Provenance (which proposer and verifier agreed on a box, and how strongly) rides in `BoundingBox.id` as compact JSON: a
field viam-server leaves empty, so files stay readable by any Viam tool and files written by viam-server simply carry none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from google.protobuf.message import DecodeError
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve.errors import InputError

__all__ = ["CaptureFile", "CorruptCaptureError", "capture_dir_for", "capture_file_name", "decode_provenance",
           "encode_provenance", "read_capture", "write_capture"]

CAPTURE_SUFFIX, PROGRESS_SUFFIX = ".capture", ".prog"
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
    body = message.SerializeToString(deterministic=True)  # maps in key order: the same reading, the same bytes
    return _VarintBytes(len(body)) + body


def _new_progress_file(folder: Path, name: str | None) -> tuple[Path, Path, BinaryIO]:
    """Open a fresh `.prog` file. Without a given name, a name already taken (two images in one microsecond, as GetImages
    can produce) moves on by a microsecond: viam-server would overwrite the first file there; we never do."""
    now = datetime.now()
    while True:
        stem = name or capture_file_name(now)
        progress, final = folder / f"{stem}{PROGRESS_SUFFIX}", folder / f"{stem}{CAPTURE_SUFFIX}"
        if name or not final.exists():
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if name else os.O_EXCL)
            try:
                return progress, final, os.fdopen(os.open(progress, flags, 0o600), "wb")  # viam-server's 0600
            except FileExistsError:
                pass
        now += timedelta(microseconds=1)


def write_capture(folder: Path, header: DataCaptureMetadata, readings: Iterable[SensorData], name: str | None = None) -> Path:
    """Write one closed capture file: `.prog` first, fsync, then rename to `.capture`. Returns the final path."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # viam-server's MkdirAll(dir, 0o700)
    progress, final, out = _new_progress_file(folder, name)
    with out:
        out.write(_frame(header))
        for reading in readings:
            out.write(_frame(reading))
        out.flush()
        os.fsync(out.fileno())
    os.replace(progress, final)
    return final


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
