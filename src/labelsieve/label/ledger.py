"""The backlog job's ledger: one SQLite row per frame it finished, so a job killed at any moment resumes where it was.

A frame's row is written only after its output file is in place (atomically, under a name derived from the frame's key),
so a kill between the two redoes the frame and rewrites the same file: nothing is lost and nothing is written twice. A
frame whose stage failed is recorded for the summary and redone by the next run. The gate's reference thumbnail of each
examined frame is kept, so a resumed stream is gated exactly as an uninterrupted one without decoding its finished frames.
The summary is read from the ledger, so it covers the whole job however many runs it took.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelsieve.errors import ConfigError

__all__ = ["FAILED", "Ledger", "Record"]

#: Outcomes redone by the next run: a stage's failure is usually passing (a timeout, an endpoint down).
FAILED = ("detector_failed", "verifier_failed")
_NAMED = 20  # failures named per reason in the summary

_SCHEMA = """
create table if not exists frames (
    key text primary key, stream text not null, outcome text not null, reference blob, output text not null,
    labels text not null, reason text not null, seconds text not null);
create table if not exists job (name text primary key, value text not null);
"""


@dataclass(frozen=True)
class Record:
    key: str
    stream: str
    outcome: str  # the filter's outcome, or "duplicate" / "unreadable"
    reference: bytes | None = None  # the gate thumbnail (32x32 uint8) when the frame passed the gate
    output: str = ""  # the capture file written (kept frames)
    labels: tuple[str, ...] = ()
    reason: str = ""
    seconds: Mapping[str, float] = field(default_factory=dict)


class Ledger:
    def __init__(self, path: Path, fingerprint: str) -> None:
        """`fingerprint` names the filter settings; a ledger made with others refuses to mix their outputs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._lock = path, threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")  # WAL + normal: a committed row survives a killed process
        self._db.executescript(_SCHEMA)
        row = self._db.execute("select value from job where name = 'filter'").fetchone()
        if row is None:
            self._db.execute("insert into job values ('filter', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            raise ConfigError("label", "--out", f"its ledger {path} was written with other filter settings",
                              "label into a new --out, or delete that ledger to relabel everything")

    def finished(self) -> dict[str, dict[str, bytes | None]]:
        """Per stream, every finished frame's key with its gate reference (None when it did not pass the gate)."""
        with self._lock:
            rows = self._db.execute(f"select stream, key, reference from frames where outcome not in {FAILED}").fetchall()
        streams: dict[str, dict[str, bytes | None]] = {}
        for stream, key, reference in rows:
            streams.setdefault(stream, {})[key] = reference
        return streams

    def record(self, records: Iterable[Record]) -> None:
        rows = [(r.key, r.stream, r.outcome, r.reference, r.output, json.dumps(list(r.labels)), r.reason,
                 json.dumps(dict(r.seconds))) for r in records]
        with self._lock:
            self._db.execute("begin")
            self._db.executemany("insert or replace into frames values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("commit")

    def summary(self) -> dict[str, Any]:
        """seen, duplicates, kept, labels by class, failures by reason (counted, the first ones named), seconds by stage."""
        with self._lock:
            rows = self._db.execute("select key, outcome, labels, reason, seconds from frames order by key").fetchall()
        outcomes: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        failures: dict[str, dict[str, Any]] = {}
        for key, outcome, names, reason, spent in rows:
            outcomes[outcome] += 1
            labels.update(json.loads(names))
            seconds.update(json.loads(spent))
            if outcome in (*FAILED, "unreadable"):
                entry = failures.setdefault(outcome, {"count": 0, "named": []})
                entry["count"] += 1
                if len(entry["named"]) < _NAMED:
                    entry["named"].append(f"{key}: {reason}")
        return {"seen": sum(outcomes.values()) - outcomes["unreadable"], "duplicates": outcomes["duplicate"],
                "kept": outcomes["kept"], "nothing_verified": outcomes["nothing_verified"],
                "labels": dict(sorted(labels.items())), "failures": failures,
                "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())}}

    def close(self) -> None:
        with self._lock:
            self._db.close()
