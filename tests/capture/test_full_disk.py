"""A full disk: a failed capture write leaves no file behind, is logged once per streak, and capture resumes when space
returns (a real 3 MB tmpfs where the test may mount one, an fsync that fails with ENOSPC everywhere)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import eventually
from support.cameras import SerialCamera, get_images_method

from labelsieve.capture.manager import DataManager, DataManagerConfig

KEY = "rdk:component:camera/cam/GetImages"


def run_through_a_full_disk(root: Path, padding: int, fill: Callable[[], None], free: Callable[[], None]) -> None:
    async def run() -> None:
        manager = DataManager("dm", DataManagerConfig.parse("dm", {"capture_dir": str(root)}), [get_images_method(100)],
                              {"cam": SerialCamera(padding=padding)})
        await manager.start()

        def counts() -> dict[str, int]:
            return manager.stats()["methods"][KEY]  # type: ignore[no-any-return]

        try:
            fill()

            async def failing() -> None:
                assert counts()["errors"] >= 30
            await eventually(failing)
            assert len(list(root.rglob("*.prog"))) <= 1, "only the file being written, never one per tick"
            captured = counts()["captured"]
            free()

            async def resumed() -> None:
                assert counts()["captured"] >= captured + 3
            await eventually(resumed)
        finally:
            await manager.close()

    asyncio.run(run())
    assert not list(root.rglob("*.prog"))


def streaks_logged(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """(failure streaks logged, recoveries logged): each streak is one ERROR line, each recovery one INFO line."""
    failed = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert all(r.levelno == logging.ERROR for r in failed)
    return len(failed), sum("writing rdk:component:camera/cam/GetImages again" in r.getMessage() for r in caplog.records)


def test_failed_writes_leave_nothing_and_log_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    full, fsync = threading.Event(), os.fsync

    def no_space(fd: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", no_space)
    run_through_a_full_disk(tmp_path / "capture", 100, full.set, full.clear)
    assert streaks_logged(caplog) == (1, 1)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_tmpfs_leaves_no_empty_files(small_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    root = small_tmpfs / "capture"

    def wait_until_full() -> None:
        pass  # 300 KB frames at 100 Hz fill 3 MB within a tenth of a second

    def free() -> None:
        for path in root.rglob("*.capture"):  # as a sync would
            path.unlink()

    run_through_a_full_disk(root, 300_000, wait_until_full, free)
    failed, resumed = streaks_logged(caplog)
    assert resumed >= 1 and failed - resumed in (0, 1), "once per streak (freed space fills again at 100 Hz)"
