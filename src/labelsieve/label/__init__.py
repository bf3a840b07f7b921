"""Label what is already captured: capture files, image folders and videos through a filter's stages, into the capture
files the live filter and the data manager would have written, on one machine or on a Ray cluster.

    summary = label(["~/.viam/capture", "clips/*.mp4"], "machine.json", "labeler", "s3://bucket/labeled")

Resumable and exactly once: a ledger (SQLite) records every finished frame; a re-run with the same arguments skips them,
redoes the rest, and rewrites no file (each frame's file name comes from its identity and is written atomically).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fsspec.core import split_protocol
from tqdm import tqdm

from labelsieve.label.job import output_for
from labelsieve.label.ledger import Ledger
from labelsieve.label.local import run_local
from labelsieve.label.sources import open_sources
from labelsieve.label.stages import StageSpec

__all__ = ["label"]


def _local_out(out: str) -> Path | None:
    protocol = split_protocol(out)[0]
    return Path(out.removeprefix("file://")).expanduser().absolute() if protocol in (None, "file") else None


class _Progress:
    """The bar, and this run's pace: frames a second between the first and the last frame finished (start-up apart)."""

    def __init__(self, bar: tqdm[Any]) -> None:
        self.bar, self.count, self.first, self.last, self.first_count = bar, 0, 0.0, 0.0, 0

    def __call__(self, frames: int) -> None:
        now = time.perf_counter()
        if not self.first:
            self.first, self.first_count = now, frames
        self.last, self.count = now, self.count + frames
        self.bar.update(frames)

    def pace(self) -> dict[str, float]:
        span = self.last - self.first
        return {"frames": self.count,
                "frames_per_s": round((self.count - self.first_count) / span, 3) if span > 0 else 0.0}


def label(sources: Sequence[str], config: Path, filter: str, out: str, *, data_dir: Path, every: int = 1,
          fps: float = 0.0, ledger: Path | None = None, in_flight: int = 8, ray: str | None = None,
          proposers: int | None = None, verifiers: int | None = None, actor_cpus: float = 1.0,
          progress: bool = True) -> dict[str, Any]:
    """Label every frame of `sources` with the filter `filter` of the machine config `config` into `out` (a folder or
    an fsspec URL); returns the summary, also saved as `out/label-summary.json`.

    The ledger is `out/labelsieve-ledger.sqlite` for a local `out`, else under `data_dir/label/<out's digest>/`, where
    remote sources are cached and remote outputs staged too. `ray` ("auto" or an address) runs the job on Ray Data.
    """
    spec = StageSpec(Path(config), filter)
    spec.filter_config()  # a wrong config or filter name fails before anything is read
    work = data_dir / "label" / hashlib.sha256(out.encode()).hexdigest()[:16]
    streams = open_sources(sources, every=every, fps=fps, cache=work / "cache")
    local = _local_out(out)
    book = Ledger(ledger or (local / "labelsieve-ledger.sqlite" if local else work / "ledger.sqlite"), spec.fingerprint())
    try:
        output = output_for(spec, str(local) if local else out, work / "staging")
        finished = book.finished()
        start = time.perf_counter()
        with tqdm(total=sum(s.estimate for s in streams), unit="frame", desc=f"label {filter}", disable=not progress,
                  dynamic_ncols=True) as bar:
            advance = _Progress(bar)
            student: dict[str, Any] | None = None
            if ray:
                from labelsieve.label.ray import run_ray  # Ray only when asked for

                run_ray(spec, streams, finished, book, output, advance, address=ray, data_dir=work / "runtime",
                        proposers=proposers, verifiers=verifiers, actor_cpus=actor_cpus)
            else:
                student = asyncio.run(run_local(spec, streams, finished, book, output, advance, data_dir=work / "runtime",
                                      in_flight=in_flight))
        summary = book.summary() | {"output": out, "ledger": str(book.path), "this_run": {
            **advance.pace(), "wall_s": round(time.perf_counter() - start, 3)}}
        if student is not None:
            summary["student"] = student  # this run's policy counters (frames finished before are not in them)
        summary["summary_file"] = output.save_summary(json.dumps(summary, indent=2))
        return summary
    finally:
        book.close()
