"""`labelsieve label --ray` on a local Ray cluster (2 CPUs, 127.0.0.1): the same files as in process, even with a
proposer actor SIGKILLed mid-job (Ray restarts it and retries its batch; the rewritten files are the same bytes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from labelsieve.label import label
from support import ROOT
from support.oracle import module_stages_config, oracle_config, scene, write_frames

ray = pytest.importorskip("ray")
os.environ["LABELSIEVE_LABEL_STAGES"] = "support.oracle"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """Workers inherit this environment: the oracle stages import from tests/."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.rglob("*") if p.suffix in (".capture", ".prog")}


def _proposer_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("_Proposer" in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def test_ray_writes_what_in_process_writes_with_a_worker_killed_mid_job(tmp_path: Path, cluster: None) -> None:
    frames = tmp_path / "frames"
    write_frames(frames, scene(30, seed=11))
    config = oracle_config(tmp_path / "machine.json", delay_propose=0.1, delay_verify=0.05)
    label([str(frames)], config, "labeler", str(tmp_path / "local"), data_dir=tmp_path / "home", progress=False)

    out, result, killed = tmp_path / "ray", {}, threading.Event()

    def job() -> None:
        result.update(label([str(frames)], config, "labeler", str(out), data_dir=tmp_path / "home", progress=False,
                            ray="auto", actor_cpus=0.5))

    runner = threading.Thread(target=job)
    runner.start()
    ledger = out / "labelsieve-ledger.sqlite"
    while runner.is_alive() and not killed.is_set():  # once frames are coming out, kill a proposer worker
        runner.join(0.2)
        if ledger.exists() and _rows(ledger) >= 3 and (workers := _proposer_workers()):
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.set()
    runner.join()

    assert killed.is_set() and result["seen"] == 30 and not result["failures"]
    assert files(out) == files(tmp_path / "local")
    assert _rows(ledger) == 30


def test_ray_reaches_stages_served_by_another_module_through_the_runtime(tmp_path: Path, cluster: None) -> None:
    """The driver runs the module's stages in the embedded runtime; every actor dials it as the filter module would."""
    frames, config = module_stages_config(tmp_path)

    summary = label([str(frames)], config, "labeler", str(tmp_path / "out"), data_dir=tmp_path / "home",
                    progress=False, ray="auto", actor_cpus=0.5)

    assert summary["labels"] == {"glasses": 1, "no_glasses": 1} and summary["nothing_verified"] == 1
    assert not summary["failures"]


def _rows(ledger: Path) -> Any:
    with sqlite3.connect(ledger) as db:
        try:
            return db.execute("select count(*) from frames").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0
