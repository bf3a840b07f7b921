"""Stuck `.prog` files (a writer killed mid-file) are finished, never lost: whole messages become a `.capture`, a torn last
message is cut off, files without a reading are removed, and a file being written is never touched."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve.capture import read_capture
from labelsieve.capture.format import STUCK_AFTER_S, _whole_messages, recover_stuck
from labelsieve.capture.sync import sync

HEADER = DataCaptureMetadata(component_type="rdk:component:camera", component_name="cam", method_name="GetImages")


def framed(*messages: DataCaptureMetadata | SensorData) -> bytes:
    return b"".join(_VarintBytes(len(m.SerializeToString())) + m.SerializeToString() for m in messages)


def stale(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (time.time() - 2 * STUCK_AFTER_S,) * 2)
    return path


def test_stuck_progress_files_are_finished_cut_or_removed(tmp_path: Path) -> None:
    folder = tmp_path / "rdk_component_camera" / "cam" / "GetImages"
    folder.mkdir(parents=True)
    one, two = SensorData(binary=b"first" * 100), SensorData(binary=b"second" * 100)
    whole = stale(folder / "a.prog", framed(HEADER, one))
    torn = stale(folder / "b.prog", framed(HEADER, one, two)[:-7])  # killed inside its second message
    stale(folder / "c.prog", b"")  # killed right after the open
    stale(folder / "d.prog", framed(HEADER))  # killed before its reading
    stale(folder / "e.prog", framed(HEADER)[:-3])  # killed inside the header
    young = folder / "f.prog"
    young.write_bytes(framed(HEADER, one))  # may still be written by a writer that takes no lock
    locked = stale(folder / "g.prog", framed(HEADER))
    (folder / "a.capture").write_bytes(b"an older file of the same name")

    with open(locked, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # a live writer (this process or another) holds its file's lock
        counts = recover_stuck(tmp_path)
    assert counts == {"recovered": 1, "cut": 1, "removed": 3, "young": 1, "busy": 1}
    assert sorted(p.name for p in folder.iterdir()) == ["a.capture", "a_recovered.capture", "b.capture", "f.prog",
                                                        "g.prog"]
    assert (folder / "a.capture").read_bytes() == b"an older file of the same name", "never over an existing file"
    assert read_capture(folder / "a_recovered.capture").readings == (one,)
    assert read_capture(folder / "b.capture").readings == (one,), "the torn last message is cut, the rest kept"
    assert not whole.exists() and not torn.exists()

    assert recover_stuck(tmp_path, now=time.time() + 2 * STUCK_AFTER_S) == {"recovered": 1, "removed": 1}
    assert read_capture(folder / "f.capture").readings == (one,)


def test_sync_finishes_stuck_files_first(tmp_path: Path) -> None:
    local = tmp_path / "capture"
    folder = local / "rdk_component_camera" / "cam" / "GetImages"
    folder.mkdir(parents=True)
    stale(folder / "x.prog", framed(HEADER, SensorData(binary=b"frame")))
    report = sync(local, str(tmp_path / "remote"))
    assert (report.recovered, report.uploaded) == (1, 1)
    assert read_capture(tmp_path / "remote" / "rdk_component_camera" / "cam" / "GetImages" / "x.capture").readings


CHILD = """
import asyncio, sys
from pathlib import Path
from support.cameras import SerialCamera, get_images_method
from labelsieve.capture.manager import DataManager, DataManagerConfig

async def main():
    config = DataManagerConfig.parse("dm", {"capture_dir": sys.argv[1]})
    camera = SerialCamera(prefix=sys.argv[2].encode(), padding=8_000_000)
    await DataManager("dm", config, [get_images_method(100)], {"cam": camera}).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_runtime_killed_during_fast_capture_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL a process capturing 8 MB frames at 100 Hz (so it is nearly always mid-file) again and again; a restart
    finishes what each kill left."""
    root, rng, seen_progress = tmp_path / "capture", random.Random(3), 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    for run in range(4):
        before = len(list(root.rglob("*.capture")))
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), f"run{run}-"], env=env)
        deadline = time.monotonic() + 60
        while len(list(root.rglob("*.capture"))) < before + 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.2))
        assert child.poll() is None, "the capturing process runs until killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        seen_progress += len(list(root.rglob("*.prog")))

    captures = len(list(root.rglob("*.capture")))
    with_a_reading = sum(_whole_messages(path.read_bytes())[1] >= 2 for path in root.rglob("*.prog"))
    recover_stuck(root, now=time.time() + 2 * STUCK_AFTER_S)  # a restart, once they have stopped changing
    files = sorted(root.rglob("*"))
    assert not [p for p in files if p.suffix == ".prog"]
    serials = [read_capture(p).readings[0].binary[:13] for p in files if p.suffix == ".capture"]
    assert len(serials) == len(set(serials)), "no frame twice"
    assert len(serials) == captures + with_a_reading, "every whole frame a kill left is kept"
    assert seen_progress >= 1 and captures >= 12, "some kill landed mid-file"
