"""Viam cloud paths against the local stand-in of Viam's app (tests/support/viam_app.py), on one machine, so the numbers
are labelsieve's own cost per file, not the network's.

    .venv/bin/python bench/viam_cloud.py [--files 200]

(a) Sync: files per second uploaded to the stand-in (`sync_url: "viam://"`) beside the same files synced to a local
    folder (the fsspec path): the ratio is what Viam's protocol (a connection, a marker, one RPC per file) costs.
(b) Pull: a `viam://` source pulled the first time (listing, then images 20 per call) beside a re-run (listing only,
    every image cached): the ratio is what resuming saves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.scenes import write_scenes
from support.viam_app import viam_app

from labelsieve.capture.sync import sync
from labelsieve.cloud.captures import pull


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, viam_app() as app:
        root = Path(tmp)
        os.environ.update({**app.env(), "LABELSIEVE_HOME": str(root / "home")})
        write_scenes(root / "a", range(args.files), frames=1, size=320)
        shutil.copytree(root / "a", root / "b")
        folder = timed(lambda: sync(root / "a", str(root / "remote")))
        viam = timed(lambda: sync(root / "b", "viam://"))
        n = args.files
        print(f"(a) sync {n} files (one 320x320 JPEG each)")
        print(f"    to a folder        {n / folder:8.1f} files/s")
        print(f"    to Viam (stand-in) {n / viam:8.1f} files/s   ({viam / folder:.1f}x the folder's time; the stand-in shares this process)")
        first = timed(lambda: pull("viam://data", progress=False))
        again = timed(lambda: pull("viam://data", progress=False))
        print(f"(b) pull {len(app.binaries)} images: first {first:.2f} s, re-run {again:.2f} s "
              f"(ratio {first / again:.1f}x)")


if __name__ == "__main__":
    main()
