"""Build a dataset version from capture files: read, deduplicate, split, export YOLO + COCO, record provenance.

`OUT` holds versions `v1`, `v2`, ... side by side. Each is built in `OUT/.building-<pid>` and renamed into place when
complete, under a lock, so a crash or a second builder never leaves a half version under a real name; remote capture
files are cached in `OUT/.cache`, so a build that died half way resumes without downloading again.

The class order is frozen: a version lists the previous version's classes first, in the same order, then new ones
(sorted), so class id 3 means the same thing in every version and in every model trained on any of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from labelsieve.capture.format import CorruptCaptureError, read_capture
from labelsieve.detections import Detections
from labelsieve.dataset.formats import SPLITS, as_coco, as_manifest, as_yolo, data_yaml, from_coco
from labelsieve.dataset.frames import CapturedFrame, frames_of
from labelsieve.dataset.sources import SourceFile, download_dataset, list_captures, read_source
from labelsieve.dataset.split import group_frames, split_groups
from labelsieve.errors import InputError
from labelsieve.paths import home
from labelsieve.versions import locked, next_version, version_dirs

__all__ = ["BuildResult", "DatasetVersion", "build_dataset", "open_dataset", "revise_dataset", "versions"]

log = logging.getLogger(__name__)

VERSION_FILE = "version.json"


@dataclass(frozen=True)
class DatasetVersion:
    """One built version: a YOLO dataset folder plus `version.json` (its id, classes, sources, counts)."""

    path: Path
    info: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def id(self) -> str:
        """The content hash of every image, label, split side and class name: the exact thing a model learned from."""
        return str(self.info["id"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info["classes"])

    def split(self, split: str) -> list[Detections]:
        """The split's images (background ones too) with their labels, from the version's own COCO file: each image's
        `file_name` (relative to the version folder), `width` and `height` in its metadata."""
        path = self.path / "annotations" / f"instances_{split}.json"
        images, _ = from_coco(json.loads(path.read_text()), str(path))
        return images

    @property
    def data_yaml(self) -> Path:
        return self.path / "data.yaml"


@dataclass(frozen=True)
class BuildResult:
    version: DatasetVersion
    created: bool  # False when the sources held exactly what the latest version already holds
    summary: dict[str, Any] = field(default_factory=dict)


def versions(root: Path) -> list[DatasetVersion]:
    """The complete versions under `root`, oldest first."""
    return [DatasetVersion(path, json.loads((path / VERSION_FILE).read_text())) for path in version_dirs(root)
            if (path / VERSION_FILE).is_file()]


def open_dataset(path: str | Path) -> DatasetVersion:
    """A version folder as it is, or the latest version of a dataset root; a URL of either is downloaded first (into
    `$LABELSIEVE_HOME/datasets`)."""
    if "://" in str(path):
        path = download_dataset(str(path), home() / "datasets")
    path = Path(path)
    if (path / VERSION_FILE).is_file():
        return DatasetVersion(path, json.loads((path / VERSION_FILE).read_text()))
    found = versions(path)
    if not found:
        raise InputError(f"{path}: not a labelsieve dataset (no {VERSION_FILE}, no v1, v2, ... inside); "
                         "build one with `labelsieve dataset build SOURCE... OUT`")
    return found[-1]


def _read_frames(files: Sequence[SourceFile], staging: Path, cache: Path, progress: bool,
                 skipped: list[dict[str, str]], fill_ignore: bool) -> tuple[list[CapturedFrame], int]:
    """Frames in source order, each image written to `staging/images/all` as it is read (memory holds no pixels)."""
    frames: dict[str, CapturedFrame] = {}
    duplicates = 0
    images = staging / "images" / "all"
    images.mkdir(parents=True)
    for file in tqdm(files, desc="reading captures", unit="file", disable=not progress):
        try:
            capture = read_capture(Path(file.url), read_source(file, cache))
        except (CorruptCaptureError, OSError) as exc:
            skipped.append({"source": file.url, "reason": str(exc)})
            log.warning("skipped %s", exc if isinstance(exc, CorruptCaptureError) else f"{file.url}: {exc}")
            continue
        for item in frames_of(capture, file.url, fill_ignore=fill_ignore):
            if isinstance(item, InputError):
                skipped.append({"source": file.url, "reason": str(item)})
                log.warning("skipped %s", item)
                continue
            frame, data = item
            if frame.digest in frames:
                duplicates += 1
                continue
            (images / _image_name(frame)).write_bytes(data)
            frames[frame.digest] = frame
    return list(frames.values()), duplicates


def _image_name(frame: CapturedFrame) -> str:
    return frame.digest[:24] + frame.suffix


def _frozen_classes(previous: DatasetVersion | None, frames: Sequence[CapturedFrame]) -> tuple[str, ...]:
    before = previous.classes if previous else ()
    seen = {name for frame in frames for name in frame.detections.class_name.tolist()}
    return (*before, *sorted(seen - set(before)))


def build_dataset(sources: Sequence[str], out: Path, *, seed: int = 0, val_fraction: float = 0.2, gap_s: float = 10.0,
                  progress: bool = True, fill_ignore: bool = False) -> BuildResult:
    """Build the next version of the dataset at `out` from every `.capture` file under `sources` (folders or URLs).

    Unreadable capture files and images, frames with an unusable box and frames with ignore regions (asked-about boxes
    the filter left unresolved) are reported in the summary and skipped; with `fill_ignore`, ignore regions are painted
    over instead (unless one overlaps a labeled box). When the result equals the latest version (same content hash), no
    new version is made and that one is returned with `created=False`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    files = [file for source in sources for file in list_captures(source)]
    if not files:
        raise InputError(f"no .capture files under {', '.join(sources)}")
    out.mkdir(parents=True, exist_ok=True)
    with locked(out):
        for stale in out.glob(".building-*"):  # left by a builder that died; the lock says none is running
            shutil.rmtree(stale, ignore_errors=True)
        staging = out / f".building-{os.getpid()}"
        try:
            return _build(files, out, staging, seed=seed, val_fraction=val_fraction, gap_s=gap_s, progress=progress,
                          fill_ignore=fill_ignore)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _build(files: Sequence[SourceFile], out: Path, staging: Path, *, seed: int, val_fraction: float, gap_s: float,
           progress: bool, fill_ignore: bool) -> BuildResult:
    existing = versions(out)
    previous = existing[-1] if existing else None
    skipped: list[dict[str, str]] = []
    frames, duplicates = _read_frames(files, staging, out / ".cache", progress, skipped, fill_ignore)
    if not frames:
        raise InputError(f"no readable images in {len(files)} capture files ({len(skipped)} skipped): "
                         + "; ".join(s["reason"] for s in skipped[:3]))
    classes = _frozen_classes(previous, frames)
    groups = group_frames(frames, gap_s)
    sides = split_groups(frames, groups, val_fraction, seed)

    for split in SPLITS:
        (staging / "images" / split).mkdir()
        for frame, side in zip(frames, sides):
            if side == split:
                os.replace(staging / "images" / "all" / _image_name(frame), staging / "images" / split / _image_name(frame))
    (staging / "images" / "all").rmdir()
    digest, manifest = _export(staging, {s: [f for f, side in zip(frames, sides) if side == s] for s in SPLITS}, classes)
    unchanged = previous is not None and previous.id == digest
    name = previous.name if previous and unchanged else next_version(out).name
    negatives = {name for f in frames for (_, _, name), p in zip(f.detections, f.detections.provenance)
                 if (p or {}).get("answer") == "no"}
    per_class = _per_class(frames)
    summary = {
        "version": name, "id": digest, "images": len(frames),
        "background_images": sum(1 for f in frames if not len(f.detections)),
        "boxes": sum(per_class.values()), "boxes_per_class": {c: per_class.get(c, 0) for c in classes},
        "split": {s: sides.count(s) for s in SPLITS}, "groups": len(groups),
        "duplicate_frames": duplicates, "capture_files": len(files), "skipped": skipped,
        "ignore_regions_filled": sum(int(f.detections.metadata.get("filled_regions", 0)) for f in frames),
    }
    if previous and unchanged:  # what this build found (its duplicates, its skips), not the earlier build's counts
        log.info("the sources hold exactly %s (%s); no new version", previous.name, digest[:12])
        return BuildResult(previous, False, summary)
    info = {
        "name": name, "id": digest, "parent": previous.id if previous else None, "classes": list(classes),
        "negative_classes": sorted(negatives | set(previous.info.get("negative_classes", ()) if previous else ())),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "sources": sorted({f.url for f in files}),
        "seed": seed, "val_fraction": val_fraction, "gap_s": gap_s, "fill_ignore": fill_ignore,
    }
    return BuildResult(_commit(staging, out, info, summary, manifest), True, summary)


def _per_class(frames: Sequence[CapturedFrame]) -> Counter[str]:
    return Counter(name for f in frames for name in f.detections.class_name.tolist())


def _export(staging: Path, members: dict[str, list[CapturedFrame]], classes: Sequence[str]
            ) -> tuple[str, list[dict[str, Any]]]:
    """YOLO labels, COCO and manifest rows for frames whose images are already in `staging/images/<split>`, and the
    content hash (classes, then every image name and label in a fixed order): the version's id."""
    class_ids = {name: i for i, name in enumerate(classes)}
    content = hashlib.sha256(json.dumps(list(classes)).encode())
    manifest: list[dict[str, Any]] = []
    for split in SPLITS:
        ordered = sorted(members[split], key=lambda f: f.digest)
        (staging / "labels" / split).mkdir(parents=True)
        for frame in ordered:
            name, label = _image_name(frame), as_yolo(frame.detections, frame.width, frame.height, class_ids)
            (staging / "labels" / split / f"{frame.digest[:24]}.txt").write_text(label)
            content.update(f"\0{split}/{name}\0{label}".encode())
            manifest += as_manifest(frame.detections, f"images/{split}/{name}", split, frame.width, frame.height,
                                    class_ids)
        coco = as_coco([f.detections.with_metadata(file_name=f"images/{split}/{_image_name(f)}", width=f.width,
                                                   height=f.height) for f in ordered], classes)
        (staging / "annotations").mkdir(exist_ok=True)
        (staging / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, indent=1))
    (staging / "data.yaml").write_text(data_yaml(classes))
    return content.hexdigest(), manifest


def _commit(staging: Path, out: Path, info: dict[str, Any], summary: dict[str, Any],
            manifest: list[dict[str, Any]]) -> DatasetVersion:
    """The last step of making a version: its files complete in `staging`, one rename puts it under its name."""
    (staging / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in manifest))
    (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    (staging / VERSION_FILE).write_text(json.dumps(info, indent=2))
    os.rename(staging, out / info["name"])
    return DatasetVersion(out / info["name"], info)


def revise_dataset(previous: DatasetVersion, members: dict[str, list[CapturedFrame]], note: dict[str, Any],
                   extra_rows: Sequence[dict[str, Any]] = (), classes: Sequence[str] | None = None) -> DatasetVersion:
    """The next version after `previous` (which must be its dataset's latest) holding the same images with `members`'
    boxes (a human review's decisions), made as atomically as a build. Images are hard-linked where the filesystem
    allows; `note` goes into version.json and `extra_rows` (e.g. rejected boxes) to the end of the manifest. `classes`
    (default: the previous ones) must start with the previous classes in their order: the frozen class order."""
    classes = tuple(classes or previous.classes)
    if classes[:len(previous.classes)] != previous.classes:
        raise InputError(f"the classes {list(classes)} do not keep {previous.name}'s order {list(previous.classes)}")
    out = previous.path.parent
    with locked(out):
        latest = versions(out)
        if not latest or latest[-1].path != previous.path:
            raise InputError(f"{previous.path}: not the latest version of {out} any more "
                             f"({latest[-1].name if latest else 'none'} is); review the latest one")
        staging = out / f".building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for split in SPLITS:
                (staging / "images" / split).mkdir(parents=True)
                for frame in members[split]:
                    name = _image_name(frame)
                    try:
                        os.link(previous.path / "images" / split / name, staging / "images" / split / name)
                    except OSError:  # another filesystem, or one without hard links
                        shutil.copyfile(previous.path / "images" / split / name, staging / "images" / split / name)
            digest, manifest = _export(staging, members, classes)
            frames = [f for split in SPLITS for f in members[split]]
            per_class = _per_class(frames)
            name = next_version(out).name
            summary = {**json.loads((previous.path / "summary.json").read_text()), "version": name, "id": digest,
                       "background_images": sum(1 for f in frames if not len(f.detections)),
                       "boxes": sum(per_class.values()),
                       "boxes_per_class": {c: per_class.get(c, 0) for c in classes}}
            info = {**previous.info, "name": name, "id": digest, "parent": previous.id, "classes": list(classes),
                    "created": datetime.now(UTC).isoformat(timespec="seconds"), "review": note}
            return _commit(staging, out, info, summary, [*manifest, *extra_rows])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
