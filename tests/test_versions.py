"""The numbered version folders datasets and models share, and the atomic writes beside them."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from labelsieve.files import write_bytes_atomic
from labelsieve.versions import locked, next_version, version_dirs


def _claim(root: str) -> None:
    with locked(Path(root)):
        next_version(Path(root)).mkdir()


def test_versions_number_on_from_the_highest_and_writers_never_share_a_number(tmp_path: Path) -> None:
    assert next_version(tmp_path / "none").name == "v1" and version_dirs(tmp_path / "none") == []
    for name in ("v1", "v10", "v2", "vx", ".building-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "v11").write_text("a file, not a version")
    assert [p.name for p in version_dirs(tmp_path)] == ["v1", "v2", "v10"] and next_version(tmp_path).name == "v12"
    workers = [multiprocessing.get_context("spawn").Process(target=_claim, args=(str(tmp_path),)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 4  # a shared number would fail mkdir
    assert [p.name for p in version_dirs(tmp_path)][-4:] == ["v12", "v13", "v14", "v15"]


def test_write_bytes_atomic_replaces_whole_or_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cache.capture"
    write_bytes_atomic(target, b"\x00old")
    assert target.read_bytes() == b"\x00old" and target.stat().st_mode & 0o777 == 0o644

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"\x00old" and sorted(p.name for p in tmp_path.iterdir()) == ["cache.capture"]
