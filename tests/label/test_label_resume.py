"""Exactly once: `labelsieve label` SIGKILLed at random moments and run again until it finishes writes the same files,
byte for byte, as one uninterrupted run: nothing lost, nothing written twice, no half file left."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from labelsieve.label import label
from support import ROOT
from support.oracle import oracle_config, scene, write_frames

os.environ["LABELSIEVE_LABEL_STAGES"] = "support.oracle"


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix in (".capture", ".prog")}


def test_killed_at_random_moments_and_run_again_writes_what_one_run_writes(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    write_frames(frames, scene(40, seed=7))
    config = oracle_config(tmp_path / "machine.json", delay_propose=0.05, delay_verify=0.05)
    label([str(frames)], config, "labeler", str(tmp_path / "whole"), data_dir=tmp_path / "home", progress=False)

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "labelsieve", "label", str(frames), "--config", str(config), "--filter", "labeler",
               "--out", str(out), "--data-dir", str(tmp_path / "home")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}"}
    # Killed once the output holds a random number of files (plus a random moment more), six times; then left to finish.
    rng, kills = random.Random(15), 0
    for target in [*sorted(rng.sample(range(1, 38), 6)), None]:
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while target is not None and run.poll() is None and len(files(out)) < target:
            time.sleep(0.01)
        if target is not None and run.poll() is None:
            time.sleep(rng.uniform(0.0, 0.1))
            run.kill()
            kills += 1
        code = run.wait(timeout=120)
        assert run.stderr is not None
        errors = run.stderr.read().decode()
        run.stderr.close()
    assert code == 0, errors
    assert kills >= 3  # a run may finish its share before the kill lands; most must not

    assert files(out) == files(tmp_path / "whole")
    ledger = sqlite3.connect(out / "labelsieve-ledger.sqlite")
    assert ledger.execute("select count(*) from frames").fetchone() == (40,)
