"""One human review of a dataset version: its boxes, least agreement first, the reviewer's decisions, and the next
version with those decisions applied.

Every decision is appended (and fsynced) to `ROOT/.review-<version>-<id>.jsonl` as it is made, so a crash or a closed
tab loses nothing: reviewing the same version again picks the decisions up, the last one per box winning. Finishing
writes the next version through `revise_dataset` (atomic, like a build) and removes the log.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from labelsieve.dataset import DatasetVersion, revise_dataset
from labelsieve.dataset.formats import SPLITS, from_coco, from_manifest
from labelsieve.dataset.frames import CapturedFrame
from labelsieve.errors import InputError

__all__ = ["DECISIONS", "Review", "ReviewAction"]

ReviewAction = Literal["accept", "reject", "relabel"]
DECISIONS: tuple[ReviewAction, ...] = ("accept", "reject", "relabel")


def _doubt(row: dict[str, Any]) -> tuple[int, float, float]:
    """Sort key, most doubtful first: "unsure" verdicts, then low agreement, then low verifier confidence."""
    prov = row.get("provenance") or {}
    agreement = prov.get("agreement", row.get("confidence", 1.0))
    return (prov.get("answer") != "unsure", float(agreement), float(prov.get("verifier_confidence", agreement)))


class Review:
    """The boxes of `version` (the latest of its dataset) and the decisions made on them so far."""

    def __init__(self, version: DatasetVersion) -> None:
        self.version = version
        manifest = version.path / "manifest.jsonl"
        if not manifest.is_file():
            raise InputError(f"{version.path}: no manifest.jsonl; build the dataset with `labelsieve dataset build`")
        self.rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        self.order = sorted(range(len(self.rows)), key=lambda i: (*_doubt(self.rows[i]), i))
        self.log = version.path.parent / f".review-{version.name}-{version.id[:12]}.jsonl"
        self.decisions: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._log: TextIO | None = None
        if self.log.is_file():
            for line in self.log.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a log cut by a crash
                    continue
                self.decisions[int(entry["box"])] = entry

    def boxes(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Boxes in review order: what the page shows for each."""
        out = []
        for rank, i in enumerate(self.order[offset:None if limit is None else offset + limit], start=offset):
            row, prov = self.rows[i], self.rows[i].get("provenance") or {}
            out.append({"id": i, "rank": rank, "image": row["image"], "class": row["class"], "box": row["box"],
                        "agreement": prov.get("agreement", row.get("confidence")), "answer": prov.get("answer"),
                        "verifier_confidence": prov.get("verifier_confidence"), "decision": self.decisions.get(i)})
        return out

    def decide(self, box: int, decision: str, label: str | None = None) -> dict[str, Any]:
        """Record one decision (a later one on the same box replaces it) and persist it before returning."""
        if not 0 <= box < len(self.rows):
            raise InputError(f"no box {box}; this version has {len(self.rows)}")
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if decision == "relabel" and label not in self.version.classes:
            raise InputError(f"relabel needs a class of this dataset ({', '.join(self.version.classes)}), got {label!r}")
        entry = {"box": box, "decision": decision, "class": label if decision == "relabel" else None,
                 "when": datetime.now(UTC).isoformat(timespec="milliseconds")}
        with self._lock:
            if self._log is None:
                self._log = open(self.log, "a")
            self._log.write(json.dumps(entry) + "\n")
            self._log.flush()
            os.fdatasync(self._log.fileno())
            self.decisions[box] = entry
        return entry

    def counts(self) -> dict[str, int]:
        done = [d["decision"] for d in self.decisions.values()]
        return {"boxes": len(self.rows), "decided": len(done), **{d: done.count(d) for d in DECISIONS}}

    def finish(self, reviewer: str = "") -> DatasetVersion:
        """The next dataset version: rejected boxes out of the labels, relabeled ones under their new class; every
        decided box's manifest row says what the reviewer did (`provenance.review`: decision, before, after, when)."""
        with self._lock:
            members, rejected = self._members(reviewer)
            note = {"of": self.version.name, "reviewer": reviewer, **self.counts()}
            revised = revise_dataset(self.version, members, note, rejected)
            self.close()
            self.log.unlink(missing_ok=True)
            return revised

    def close(self) -> None:
        """Close the decisions log (every decision is on disk already; this only releases the file)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def _members(self, reviewer: str) -> tuple[dict[str, list[CapturedFrame]], list[dict[str, Any]]]:
        """Every image of the version (from its COCO files, which list background images too) with its reviewed boxes;
        the rejected boxes' manifest rows."""
        by_image: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(self.rows):
            by_image[row["image"]].append(i)
        members: dict[str, list[CapturedFrame]] = {}
        rejected = []
        for split in SPLITS:
            path = self.version.path / "annotations" / f"instances_{split}.json"
            images, _ = from_coco(json.loads(path.read_text()), str(path))
            members[split] = []
            for image in images:
                file_name, width, height = (image.metadata[k] for k in ("file_name", "width", "height"))
                rows = []
                for i in by_image.get(file_name, ()):
                    row = self.rows[i]
                    decision = self.decisions.get(i)
                    provenance = row.get("provenance")
                    if decision is not None:
                        after = None if decision["decision"] == "reject" else decision["class"] or row["class"]
                        provenance = {**(provenance or {}), "review": {
                            "decision": decision["decision"], "before": row["class"], "after": after,
                            "when": decision["when"], "reviewer": reviewer}}
                        if after is None:
                            rejected.append({**row, "class": None, "class_id": None, "provenance": provenance})
                            continue
                    rows.append({**row, "class": decision["class"] if decision and decision["class"] else row["class"],
                                 "provenance": provenance})
                name = Path(file_name).name
                members[split].append(CapturedFrame(Path(name).stem, Path(name).suffix, width, height,
                                                    from_manifest(rows, width, height), 0))
        return members, rejected
