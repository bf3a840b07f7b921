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
A frame's ignore regions (asked-about boxes the verifier left unresolved) ride in the first box's id, under `"ignore"`:
never a box of their own, so no Viam tool reads them as labels; a frame the student chose (active learning) keeps why,
under `"student"`, the same way. A frame without boxes (a student's false alarm stored as background) carries neither.
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
import numpy as np
from google.protobuf.message import DecodeError
from viam.proto.app.data import Annotations
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve.detections import Detections
from labelsieve.errors import CorruptCaptureError, InputError

__all__ = ["STUCK_AFTER_S", "CaptureFile", "CorruptCaptureError", "as_annotations", "as_ignore_rows", "capture_dir_for",
           "capture_file_name", "decode_provenance", "encode_provenance", "from_annotations", "from_ignore_rows",
           "read_capture", "recover_stuck", "write_capture"]

log = logging.getLogger(__name__)

CAPTURE_SUFFIX, PROGRESS_SUFFIX = ".capture", ".prog"
#: A `.prog` unchanged this long, with no writer holding its lock, is stuck (its writer died).
STUCK_AFTER_S = 10.0
_PROVENANCE_TAG = "ls1:"  # versioned, so an id written by anything else is never mistaken for ours


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
    body: bytes = message.SerializeToString(deterministic=True)  # maps in key order: the same reading, the same bytes
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


def as_ignore_rows(regions: Detections, width: int, height: int) -> list[dict[str, Any]]:
    """Ignore regions as JSON rows: normalized `box`, the `label` they might have, and their provenance (rule, why)."""
    return [{"box": [float(x0) / width, float(y0) / height, float(x1) / width, float(y1) / height], "label": name,
             **(provenance or {})} for ((x0, y0, x1, y1), _, name), provenance in zip(regions, regions.provenance)]


def from_ignore_rows(rows: Any, width: int, height: int) -> Detections:
    """The inverse of `as_ignore_rows`, in pixels; anything that is not a list of such rows is an InputError."""
    try:
        boxes = [[float(v) for v in row["box"]] for row in rows]
        if any(len(b) != 4 for b in boxes):
            raise ValueError("a box is not 4 numbers")
        labels = [str(row["label"]) for row in rows]
        provenance = [{k: v for k, v in row.items() if k not in ("box", "label")} for row in rows]
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise InputError(f"ignore regions must be a list of {{'box': [x0, y0, x1, y1], 'label': ...}}: {exc}") from exc
    scale = np.array([width, height, width, height], np.float32)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4) * scale, np.ones(len(boxes), np.float32),
                      np.array(labels, np.str_)).with_provenance(provenance)


def as_annotations(detections: Detections, width: int, height: int) -> Annotations:
    """A reading's boxes: normalized corners, each box's provenance (where it has one) in its `id`, and the frame's
    ignore regions (`metadata["ignore"]`, a `Detections`) in the first box's."""
    provenance = detections.provenance
    ignore, student = detections.metadata.get("ignore"), detections.metadata.get("student")
    if isinstance(ignore, Detections) and len(ignore) and provenance:
        provenance[0] = {**(provenance[0] or {}), "ignore": as_ignore_rows(ignore, width, height)}
    if isinstance(student, dict) and provenance:
        provenance[0] = {**(provenance[0] or {}), "student": student}
    annotations = Annotations()
    for ((x0, y0, x1, y1), confidence, name), box_provenance in zip(detections, provenance):
        annotations.bboxes.add(label=name, confidence=confidence,
                               id=encode_provenance(box_provenance) if box_provenance else "",
                               x_min_normalized=float(x0) / width, y_min_normalized=float(y0) / height,
                               x_max_normalized=float(x1) / width, y_max_normalized=float(y1) / height)
    return annotations


def from_annotations(annotations: Annotations, width: int, height: int) -> Detections:
    """A reading's boxes in pixels, as written: not clipped or checked (a reader decides what an unusable box means). A
    box without a confidence (a human label) has 1; one without our provenance (a file from viam-server) has None.
    Ignore regions come back in `metadata["ignore"]` (a `Detections`) and the student's record in `metadata["student"]`,
    present only where the frame has them."""
    boxes = annotations.bboxes
    corners = [(b.x_min_normalized * width, b.y_min_normalized * height, b.x_max_normalized * width,
                b.y_max_normalized * height) for b in boxes]
    provenance = [decode_provenance(b.id) for b in boxes]
    metadata: dict[str, Any] = {}
    if provenance and provenance[0] is not None and {"ignore", "student"} & set(provenance[0]):
        provenance[0] = dict(provenance[0])
        if "ignore" in provenance[0]:
            metadata["ignore"] = from_ignore_rows(provenance[0].pop("ignore"), width, height)
        if "student" in provenance[0]:
            metadata["student"] = provenance[0].pop("student")
    return Detections(np.array(corners, np.float32).reshape(-1, 4),
                      np.array([float(b.confidence) if b.HasField("confidence") else 1.0 for b in boxes], np.float32),
                      np.array([b.label for b in boxes], np.str_), metadata=metadata).with_provenance(provenance)
