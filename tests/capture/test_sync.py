"""Sync to a folder and to S3 (a real moto server): layout kept, nothing uploaded twice, local files deleted only once
verified, and `labelsieve sync` SIGKILLed at random moments loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from support.s3 import s3_server
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData

from labelsieve.capture import capture_dir_for, read_capture, write_capture
from labelsieve.capture.manager import DataManager, DataManagerConfig
from labelsieve.capture.sync import SyncBusy, _exclusive, sync
from labelsieve.errors import InputError

API, NAME, METHOD = "rdk:service:vision", "labeler", "CaptureAllFromCamera"


def make_captures(root: Path, count: int, size: int = 20_000, seed: int = 0) -> dict[str, bytes]:
    """`count` closed capture files under viam-server's layout, plus one `.prog`; returns {relative path: bytes}."""
    rng = random.Random(seed)
    folder = capture_dir_for(root, API, NAME, METHOD)
    header = DataCaptureMetadata(component_type=API, component_name=NAME, method_name=METHOD,
                                 type=DataType.DATA_TYPE_BINARY_SENSOR, mime_type="image/jpeg")
    files = {}
    for _ in range(count):
        path = write_capture(folder, header, [SensorData(binary=rng.randbytes(size))])
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    being_written = folder / "2099-01-01T00_00_00.000000Z.prog"
    being_written.write_bytes(b"being written")
    os.utime(being_written, (time.time() + 3600,) * 2)  # still changing: never synced, never taken for a stuck file
    return files


def remote_files(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in fs.find(root)} if fs.exists(root) else {}


def check_nothing_lost(originals: dict[str, bytes], local: Path, remote: dict[str, bytes]) -> None:
    """Every file is intact locally or remotely (or both, between upload and delete); no remote file is partial or extra."""
    for rel, content in originals.items():
        here = local / rel
        assert (here.exists() and here.read_bytes() == content) or remote.get(rel) == content, rel
    finals = {rel: data for rel, data in remote.items() if rel.endswith(".capture")}
    assert set(finals) <= set(originals)
    assert all(data == originals[rel] for rel, data in finals.items()), "a final remote name holds a partial file"


def test_sync_to_a_folder_keeps_the_layout_and_never_uploads_twice(tmp_path: Path) -> None:
    local, target = tmp_path / "capture", tmp_path / "remote"
    originals = make_captures(local, 5)
    report = sync(local, str(target))
    assert (report.uploaded, report.already_remote, report.failed, report.conflicts) == (5, 0, [], [])
    assert remote_files(fsspec.filesystem("file"), str(target)) == originals
    assert sorted(p.name for p in local.rglob("*") if p.is_file()) == [".sync.lock", "2099-01-01T00_00_00.000000Z.prog"]
    assert read_capture(target / next(iter(originals))).header.component_name == NAME
    again = sync(local, str(target))
    assert again.synced == 0 and again.bytes_uploaded == 0


def test_each_interrupted_state_resumes_without_loss_or_duplicate(tmp_path: Path) -> None:
    """The states a kill can leave, built by hand: the next run finishes each one, uploading only what is missing."""
    local, target = tmp_path / "capture", tmp_path / "remote"
    originals = make_captures(local, 4)
    done, partial_temp, whole_temp, conflict = sorted(originals)
    for rel in (done, partial_temp, whole_temp, conflict):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
    (target / done).write_bytes(originals[done])  # killed after the move, before the local delete

    def temp(rel: str) -> Path:
        path = target / rel
        return path.with_name(f".{path.name}.{hashlib.md5(originals[rel]).hexdigest()}.part")

    temp(partial_temp).write_bytes(originals[partial_temp][:100])  # killed mid-upload
    temp(whole_temp).write_bytes(originals[whole_temp])  # killed after the upload, before the move
    (target / conflict).write_bytes(b"another machine's file")

    report = sync(local, str(target))
    assert report.uploaded == 1 and report.already_remote == 2 and report.conflicts == [conflict]
    assert (target / conflict).read_bytes() == b"another machine's file" and (local / conflict).exists()
    for rel in (done, partial_temp, whole_temp):
        assert (target / rel).read_bytes() == originals[rel] and not (local / rel).exists() and not temp(rel).exists()


def test_one_sync_per_capture_folder_and_never_into_itself(tmp_path: Path) -> None:
    make_captures(tmp_path, 1)
    with _exclusive(tmp_path), pytest.raises(SyncBusy):
        sync(tmp_path, str(tmp_path.parent / "remote"))
    with pytest.raises(InputError, match="inside"):
        sync(tmp_path, str(tmp_path / "remote"))
    with pytest.raises(InputError, match="not a folder"):
        sync(tmp_path / "missing", str(tmp_path.parent / "remote"))


def run_cli(local: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "labelsieve", "sync", str(local), url, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_at_random_points(local: Path, url: str, originals: dict[str, bytes], listing: Callable[[], int],
                          spread_s: float, kills: int) -> int:
    """Start `labelsieve sync`, wait for its first final file, SIGKILL it a random moment later; check; repeat.
    Returns how many kills landed mid-way (files on both sides)."""
    rng, fs, root = random.Random(7), *fsspec.core.url_to_fs(url)
    midway = 0
    for _ in range(kills):
        before = listing()
        proc = run_cli(local, url)
        deadline = time.monotonic() + 30
        while listing() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, spread_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_nothing_lost(originals, local, remote_files(fs, root))
        left = len(list(local.rglob("*.capture")))
        midway += 0 < left < len(originals)
        if not left:
            break
    proc = run_cli(local, url)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    remote = remote_files(fs, root)
    assert remote == originals, "after resuming, every file is remote exactly once and no temporary is left"
    assert not list(local.rglob("*.capture")) and list(local.rglob("*.prog")), ".prog files are never synced"
    return midway


def test_cli_killed_at_random_moments_syncing_to_a_folder(tmp_path: Path) -> None:
    local, target = tmp_path / "capture", tmp_path / "remote"
    originals = make_captures(local, 60, size=50_000)

    def listing() -> int:
        return sum(1 for _ in target.rglob("*.capture"))

    assert kill_at_random_points(local, str(target), originals, listing, spread_s=0.03, kills=4) >= 1


def test_cli_killed_at_random_moments_syncing_to_s3(tmp_path: Path) -> None:
    local = tmp_path / "capture"
    originals = make_captures(local, 16)
    with s3_server() as env:
        url = f"s3://{env['BUCKET']}/robot-1"
        fs = fsspec.filesystem("s3", skip_instance_cache=True)

        def listing() -> int:
            fs.invalidate_cache()
            return sum(1 for p in fs.find(env["BUCKET"]) if p.endswith(".capture"))

        assert kill_at_random_points(local, url, originals, listing, spread_s=0.8, kills=3) >= 1
        assert sync(local, url).synced == 0


def test_a_frozen_store_ends_the_run_and_never_holds_close(tmp_path: Path) -> None:
    """moto stopped with SIGSTOP accepts connections and never answers: `labelsieve sync` gives up after its timeout with
    one line and exit 1, keeping every file; the data manager's close() does not wait for its sync."""
    local = tmp_path / "capture"
    originals = make_captures(local, 8)
    with s3_server() as env:
        url = f"s3://{env['BUCKET']}/robot-1"
        pid = int(env["PID"])
        os.kill(pid, signal.SIGSTOP)
        try:
            proc = subprocess.run([sys.executable, "-m", "labelsieve", "sync", str(local), url, "--no-progress",
                                   "--timeout", "2"], capture_output=True, text=True, timeout=120)
            assert proc.returncode != 0 and proc.stdout == ""
            [line] = proc.stderr.strip().splitlines()[-1:]
            assert "no answer from the store in 2 s" in line and "8 files kept locally" in line, proc.stderr

            async def close_during_sync() -> None:
                config = DataManagerConfig.parse("dm", {"capture_dir": str(local), "sync_url": url,
                                                        "sync_disabled": True})
                manager = DataManager("dm", config, [], {})
                syncing = asyncio.create_task(manager.sync())
                while not manager._pending:  # the sync is under way in its thread
                    await asyncio.sleep(0.01)
                await asyncio.wait_for(manager.close(), 60)  # a hang guard, not a timing: close() waits for no upload
                assert (await syncing).stopped

            asyncio.run(close_during_sync())
        finally:
            os.kill(pid, signal.SIGCONT)
        fs, root = fsspec.core.url_to_fs(url)
        check_nothing_lost(originals, local, remote_files(fs, root))  # an abandoned upload may finish after SIGCONT
        sync(local, url, timeout_s=30)
        assert remote_files(fs, root) == originals, "once the store answers again, everything goes, once"
