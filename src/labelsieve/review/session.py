"""One human review of a dataset version: its boxes, least agreement first, the reviewer's changes (accept, delete,
relabel, move or resize, add a missed box, undo), and the next version with those changes applied.

Every change is appended (and fsynced) to `ROOT/.review-<version>-<id>.jsonl` before it is confirmed, so a crash or a
closed tab loses nothing: reviewing the same version again replays the log. Each entry holds the box's whole state after
the change (class and normalized xyxy), so the last entry of a box is its state; `{"undo": n}` takes entry `n` back. A
log whose last line was torn by a crash is mended on open (the line cut, or ended if it is whole), so the next entry
starts on a line of its own. Finishing writes the next version through `revise_dataset` (atomic, like a build) and
removes the log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from labelsieve.dataset import DatasetVersion, revise_dataset
from labelsieve.dataset.formats import SPLITS, from_manifest
from labelsieve.dataset.frames import CapturedFrame
from labelsieve.errors import InputError

__all__ = ["CHANGES", "DECISIONS", "Review", "ReviewAction"]

log = logging.getLogger(__name__)

ReviewAction = Literal["accept", "reject", "relabel", "move", "add"]
DECISIONS: tuple[ReviewAction, ...] = ("accept", "reject", "relabel", "move", "add")
# What a finished review records per box in `provenance.review.changes`, comparing the box before and after.
CHANGES = ("added", "moved", "relabelled", "deleted", "accepted")
_IMAGE = re.compile(r"images/(train|val)/[0-9a-f]{24}\.[a-z]{3,4}")
_MOVED = 1e-4  # normalized: a box that moved less than this (0.06 px of a 640 px frame) did not move


def _doubt(row: dict[str, Any]) -> tuple[int, float, float]:
    """Sort key, most doubtful first: "unsure" verdicts, then low agreement, then low verifier confidence."""
    prov = row.get("provenance") or {}
    agreement = prov.get("agreement", row.get("confidence", 1.0))
    return (prov.get("answer") != "unsure", float(agreement), float(prov.get("verifier_confidence", agreement)))


def _xyxy(value: Any) -> list[float]:
    """A box the reviewer drew or moved: four finite numbers, clipped to the frame, with an area."""
    try:
        x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"a box is [x0, y0, x1, y1], normalized to the frame, got {value!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 - x0 <= 0 or y1 - y0 <= 0:
        raise InputError(f"a box needs x0 < x1 and y0 < y1 inside the frame, got {value!r}")
    return [round(v, 6) for v in (x0, y0, x1, y1)]


def _mend(path: Path) -> None:
    """End a log whose last line a crash tore: a whole JSON line gets its newline, a broken one is cut (it was never
    confirmed: the page is answered after the fsync of a complete line)."""
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
            f.write(b"\n")
            log.warning("%s: its last line had no newline; ended it", path)
        except ValueError:
            f.truncate(start)
            log.warning("%s: cut a torn last line (%d bytes) left by a crash", path, len(data) - start)
        f.flush()
        os.fsync(f.fileno())


class Review:
    """The boxes of `version` (the latest of its dataset) and the changes made to them so far. `persist=False` keeps
    the changes in memory only (an import that applies a whole file at once)."""

    def __init__(self, version: DatasetVersion, persist: bool = True) -> None:
        self.version = version
        manifest = version.path / "manifest.jsonl"
        if not manifest.is_file():
            raise InputError(f"{version.path}: no manifest.jsonl; build the dataset with `labelsieve dataset build`")
        self.rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        self.order = sorted(range(len(self.rows)), key=lambda i: (*_doubt(self.rows[i]), i))
        self.classes = self._classes()
        self.log = version.path.parent / f".review-{version.name}-{version.id[:12]}.jsonl"
        self.persist = persist
        self.history: list[dict[str, Any]] = []  # applied entries, oldest first, without the undone ones
        self.decisions: dict[int, dict[str, Any]] = {}  # each changed box's latest entry
        self.added: dict[int, dict[str, Any]] = {}  # boxes the reviewer drew: id -> their "add" entry
        self._seq = 0
        self._top = len(self.rows) - 1  # the highest box id so far: a drawn box gets the next, never one undone before
        self._lock = threading.Lock()
        self._log: TextIO | None = None
        if persist and self.log.is_file():
            _mend(self.log)
            for line in self.log.read_text().splitlines():
                self._apply(json.loads(line))

    def _classes(self) -> tuple[str, ...]:
        """Every class the rules can produce, the version's (frozen order) first: its labels, its verified negatives,
        and the `label` / `negative_label` a box's provenance names."""
        named = {str(p[key]) for row in self.rows if (p := row.get("provenance"))
                 for key in ("label", "negative_label") if p.get(key)}
        extra = named | set(self.version.info.get("negative_classes", ()))
        return (*self.version.classes, *sorted(extra - set(self.version.classes)))

    def before(self, box: int) -> dict[str, Any] | None:
        """A box as the version has it (class, xyxy); None for a box the reviewer added."""
        if box < len(self.rows):
            return {"class": self.rows[box]["class"], "xyxy": self.rows[box]["box"]}
        return None

    def current(self, box: int) -> dict[str, Any] | None:
        """A box as it is now: class, xyxy and whether it is deleted; None for no such box."""
        entry = self.decisions.get(box)
        base = self.before(box)
        if entry is None:
            return None if base is None else {**base, "deleted": False}
        return {"class": entry.get("class") or (base or {})["class"], "xyxy": entry.get("xyxy") or (base or {})["xyxy"],
                "deleted": entry["decision"] == "reject"}

    def image_sizes(self) -> dict[str, tuple[int, int]]:
        """Each image of the version (background ones too) -> (width, height), from its COCO files."""
        sizes: dict[str, tuple[int, int]] = {}
        for split in SPLITS:
            sizes.update({im.metadata["file_name"]: (im.metadata["width"], im.metadata["height"])
                          for im in self.version.split(split)})
        return sizes

    def boxes(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Boxes in review order, then the added ones: what the page shows for each."""
        out = []
        ids = [*self.order, *self.added]
        for rank, i in enumerate(ids[offset:None if limit is None else offset + limit], start=offset):
            row = self.rows[i] if i < len(self.rows) else {
                "image": self.added[i]["image"], "class": self.added[i]["class"], "box": self.added[i]["xyxy"]}
            prov = row.get("provenance") or {}
            out.append({"id": i, "rank": rank, "image": row["image"], "class": row["class"], "box": row["box"],
                        "agreement": prov.get("agreement", row.get("confidence")), "answer": prov.get("answer"),
                        "verifier_confidence": prov.get("verifier_confidence"), "question": prov.get("question"),
                        "proposer_class": prov.get("proposer_class"), "proposer_score": prov.get("proposer_score"),
                        "crop": prov.get("crop"), "source": row.get("source"), "time": row.get("time"),
                        "added": i >= len(self.rows), "decision": self.decisions.get(i)})
        return out

    def decide(self, box: int, decision: str, label: str | None = None, xyxy: Any = None,
               image: str | None = None) -> dict[str, Any]:
        """Record one change and persist it before returning (see `decide_many`)."""
        return self.decide_many([{"box": box, "decision": decision, "class": label, "xyxy": xyxy, "image": image}])[0]

    def decide_many(self, changes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record changes (each {"box", "decision", "class", "xyxy", "image"}; "add" takes no box) with one fsync for
        all; every one is checked before any is written. A later change of a box replaces its state."""
        with self._lock:
            entries: list[dict[str, Any]] = []
            staged: dict[int, dict[str, Any]] = {}
            for change in changes:
                entry = self._entry(change, staged, self._seq + len(entries))
                staged[entry["box"]] = entry
                entries.append(entry)
            self._write(entries)
            for entry in entries:
                self._apply(entry)
            return entries

    def undo(self) -> dict[str, Any] | None:
        """Take the latest change back (persisted like a change); the entry undone, or None when there is none."""
        with self._lock:
            if not self.history:
                return None
            last = self.history[-1]
            self._write([{"n": self._seq, "undo": last["n"]}])
            self._apply({"n": self._seq, "undo": last["n"]})
            return last

    def _entry(self, change: Any, staged: dict[int, dict[str, Any]], n: int) -> dict[str, Any]:
        if not isinstance(change, dict):
            raise InputError(f"a change is a JSON object, got {change!r}")
        decision, label = change.get("decision"), change.get("class")
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if label is not None and label not in self.classes:
            raise InputError(f"the class must be one the rules can produce ({', '.join(self.classes)}), got {label!r}")
        when = datetime.now(UTC).isoformat(timespec="milliseconds")
        if decision == "add":
            image = str(change.get("image"))
            if not _IMAGE.fullmatch(image) or not (self.version.path / image).is_file():
                raise InputError(f"no image {image!r} in {self.version.name}")
            if label is None:
                raise InputError("a drawn box needs a class")
            box = max([self._top, *staged]) + 1
            return {"n": n, "box": box, "decision": "add", "class": label, "xyxy": _xyxy(change.get("xyxy")),
                    "image": image, "when": when}
        try:
            box = int(change["box"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"a {decision} needs the id of a box, got {change.get('box')!r}") from None
        now = staged.get(box) or self.current(box)
        if now is None:
            raise InputError(f"no box {box}; this version has {len(self.rows)} and {len(self.added)} drawn")
        if decision == "relabel" and label is None:
            raise InputError("relabel needs a class")
        if decision == "relabel" and label == now["class"]:
            raise InputError(f"box {box} is already {label}: not a relabel")
        if decision == "move" and change.get("xyxy") is None:
            raise InputError("move needs the box's new xyxy")
        return {"n": n, "box": box, "decision": decision, "class": label or now["class"],
                "xyxy": _xyxy(change["xyxy"]) if change.get("xyxy") is not None else now["xyxy"], "when": when}

    def _write(self, entries: Sequence[dict[str, Any]]) -> None:
        if self.persist:
            if self._log is None:
                self._log = open(self.log, "a")
            self._log.write("".join(json.dumps(entry) + "\n" for entry in entries))
            self._log.flush()
            os.fdatasync(self._log.fileno())
        self._seq += len(entries)

    def _apply(self, entry: dict[str, Any]) -> None:
        self._seq = max(self._seq, int(entry.get("n", self._seq)) + 1)
        if "undo" in entry:
            undone = next((e for e in reversed(self.history) if e["n"] == entry["undo"]), None)
            if undone is not None:
                self.history.remove(undone)
                box = undone["box"]
                earlier = next((e for e in reversed(self.history) if e["box"] == box), None)
                if earlier is None:
                    self.decisions.pop(box, None)
                    self.added.pop(box, None)
                else:
                    self.decisions[box] = earlier
            return
        entry.setdefault("n", self._seq - 1)
        if entry["decision"] == "add":
            self.added[entry["box"]] = entry
            self._top = max(self._top, entry["box"])
        self.history.append(entry)
        self.decisions[entry["box"]] = entry

    def changes(self, box: int) -> list[str]:
        """What the review did to a box, in `CHANGES` words; [] for one not reviewed (or drawn, then deleted)."""
        if box not in self.decisions:
            return []
        before, after = self.before(box), self.current(box)
        assert after is not None
        if before is None:
            return [] if after["deleted"] else ["added"]
        if after["deleted"]:
            return ["deleted"]
        moved = max(abs(a - b) for a, b in zip(before["xyxy"], after["xyxy"])) >= _MOVED
        return [c for c, yes in (("moved", moved), ("relabelled", before["class"] != after["class"])) if yes] or ["accepted"]

    def counts(self) -> dict[str, int]:
        done = [c for box in self.decisions for c in self.changes(box)]
        return {"boxes": len(self.rows), "decided": sum(1 for box in self.decisions if box < len(self.rows)),
                **{c: done.count(c) for c in CHANGES}}

    def finish(self, reviewer: str = "", via: str = "page") -> DatasetVersion:
        """The next dataset version: deleted boxes out of the labels, moved, relabelled and added ones as the reviewer
        left them, unreviewed ones as they were; every changed box's manifest row says what was done
        (`provenance.review`: changes, before, after, when, reviewer, via). A class the version did not have yet goes
        after its classes, so the frozen order holds."""
        with self._lock:
            members, rejected, classes = self._members(reviewer, via)
            note = {"of": self.version.name, "reviewer": reviewer, "via": via, **self.counts()}
            revised = revise_dataset(self.version, members, note, rejected, classes)
            self.close()
            if self.persist:
                self.log.unlink(missing_ok=True)
            return revised

    def close(self) -> None:
        """Close the log (every change is on disk already; this only releases the file)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def _members(self, reviewer: str, via: str
                 ) -> tuple[dict[str, list[CapturedFrame]], list[dict[str, Any]], tuple[str, ...]]:
        """Every image of the version (from its COCO files, which list background images too) with its reviewed boxes;
        the deleted boxes' manifest rows; the classes of the next version."""
        by_image: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(self.rows):
            by_image[row["image"]].append(i)
        for i, entry in self.added.items():
            by_image[entry["image"]].append(i)
        rejected, used = [], set()
        members: dict[str, list[CapturedFrame]] = {split: [] for split in SPLITS}
        for image, (width, height) in self.image_sizes().items():
            rows = []
            for i in by_image.get(image, ()):
                row = self.rows[i] if i < len(self.rows) else {"confidence": 1.0, "provenance": None}
                changes, after = self.changes(i), self.current(i)
                provenance = row.get("provenance")
                if changes:
                    assert after is not None
                    before = self.before(i)
                    provenance = {**(provenance or {}), "review": {
                        "changes": changes, "before": before and {"class": before["class"], "box": before["xyxy"]},
                        "after": None if after["deleted"] else {"class": after["class"], "box": after["xyxy"]},
                        "when": self.decisions[i]["when"], "reviewer": reviewer, "via": via}}
                    if after["deleted"]:
                        rejected.append({**row, "class": None, "class_id": None, "provenance": provenance})
                        continue
                elif i >= len(self.rows):  # drawn, then deleted: never in any version
                    continue
                assert after is not None
                used.add(after["class"])
                rows.append({**row, "class": after["class"], "box": list(after["xyxy"]), "provenance": provenance})
            name = Path(image).name
            members[image.split("/")[1]].append(CapturedFrame(Path(name).stem, Path(name).suffix, width, height,
                                                              from_manifest(rows, width, height), 0))
        classes = (*self.version.classes, *sorted(used - set(self.version.classes)))
        return members, rejected, classes
