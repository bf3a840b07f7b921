"""The data manager's `sync_url: "viam://"` against the local stand-in of Viam's app: what arrives, what stays, what
moves to failed/, and a sync killed while an upload is in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.media import encode, noise
from support.scenes import write_scenes
from support.viam_app import PART, ViamApp, viam_app
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve.capture.format import write_capture
from labelsieve.capture.manager import DataManager, DataManagerConfig
from labelsieve.cloud.sync import sync_to_viam
from labelsieve.errors import BackendUnavailable, ConfigError


def _captures(app: ViamApp) -> list[tuple[str, int]]:
    return sorted((b.metadata.capture_metadata.component_name, b.metadata.time_requested.ToNanoseconds())
                  for b in app.binaries.values())


def test_data_manager_syncs_captures_with_their_boxes(app: ViamApp, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    files = write_scenes(capture, range(3), frames=2)
    header = DataCaptureMetadata(component_type="rdk:component:camera", component_name="big", method_name="ReadImage",
                                 type=1, mime_type="image/png", file_extension=".png")
    big = encode(noise(800, 600), "PNG")
    assert len(big) > 1 << 20
    write_capture(capture / "rdk_component_camera" / "big" / "ReadImage", header, [SensorData(binary=big)])
    config = DataManagerConfig.parse("dm", {"capture_dir": str(capture), "sync_url": "viam://"})
    report = asyncio.run(DataManager("dm", config, (), {}).sync())
    assert report.uploaded == 7 and not report.failed
    assert not list(capture.rglob("*.capture"))
    assert app.streamed == 1 and len(app.uploads) == 7 and all(u.part_id == PART for u in app.uploads)
    (stored,) = [b for b in app.binaries.values() if b.metadata.capture_metadata.component_name == "big"]
    assert stored.binary == big and stored.metadata.file_ext == ".png"
    boxed = [b for b in app.binaries.values() if b.metadata.capture_metadata.component_name == "labeler"]
    assert len(boxed) == len(files) and all(b.metadata.annotations.bboxes for b in boxed)
    assert all(b.metadata.file_ext == ".jpeg" for b in boxed)  # from the mime type, as viam-server


def test_rejected_and_corrupt_files_move_to_failed_once(app: ViamApp, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    write_scenes(capture, range(1), frames=1)
    header = DataCaptureMetadata(component_type="rdk:component:camera", component_name="cam", method_name="ReadImage",
                                 type=1, mime_type="image/jpeg")
    empty = write_capture(capture / "cam", header, [SensorData(binary=b"")], name="empty")
    (capture / "cam" / "junk.capture").write_bytes(b"\xff\xff\xff\xffnot a capture")
    report = sync_to_viam(capture, "viam://")
    assert report.uploaded == 1 and len(report.failed) == 2
    assert sorted(p.relative_to(capture).as_posix() for p in (capture / "failed").rglob("*.capture")) == \
        ["failed/cam/empty.capture", "failed/cam/junk.capture"]
    assert not empty.exists()
    again = sync_to_viam(capture, "viam://")
    assert again.uploaded == 0 and not again.failed and len(app.uploads) == 1


def test_unreachable_app_keeps_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = tmp_path / "capture"
    files = write_scenes(capture, range(2), frames=1)
    with viam_app() as gone:
        env = gone.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        sync_to_viam(capture, "viam://", first_backoff_s=0.01, give_up_after_s=0.05)
    assert all(f.exists() for f in files)
    with viam_app(port=int(env["LABELSIEVE_VIAM_APP"].rsplit(":", 1)[1])) as back:
        assert sync_to_viam(capture, "viam://").uploaded == 2 and len(back.uploads) == 2


def test_a_sync_url_without_a_part_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIAM_MACHINE_PART_ID", raising=False)
    with pytest.raises(ConfigError, match="sync_url.*part id"):
        DataManagerConfig.parse("dm", {"sync_url": "viam://"})
    monkeypatch.setenv("VIAM_API_KEY", "k")
    monkeypatch.setenv("VIAM_API_KEY_ID", "i")
    assert DataManagerConfig.parse("dm", {"sync_url": "viam://?part=p1"}).sync_url == "viam://?part=p1"


def test_wrong_key_stops_the_sync(app: ViamApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_scenes(tmp_path / "capture", range(1), frames=1)
    monkeypatch.setenv("VIAM_API_KEY", "not-the-key")
    with pytest.raises(ConfigError, match="refused the API key") as caught:
        sync_to_viam(tmp_path / "capture", "viam://")
    assert "not-the-key" not in str(caught.value) and files[0].exists()


@pytest.mark.parametrize("stored", [False, True], ids=["before-the-app-stored-it", "before-the-answer"])
def test_sync_killed_mid_upload_loses_and_repeats_nothing(app: ViamApp, tmp_path: Path, stored: bool) -> None:
    capture = tmp_path / "capture"
    write_scenes(capture, range(3), frames=2)
    app.hold_uploads_after(2, stored=stored)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "labelsieve", "sync", str(capture), "viam://", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert app.held.wait(120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    app.release()  # the connection is gone: the app dropped the held upload, or had stored it already
    assert app.settled.wait(30)
    assert len(list(capture.rglob("*.capture"))) == 6 - 2
    out = subprocess.run([sys.executable, "-m", "labelsieve", "sync", str(capture), "viam://", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("1 were already there" in out.stdout) == stored  # asked the app instead of sending it again
    assert not list(capture.rglob("*.capture")) and not list(capture.rglob(".*.sending"))
    captures = _captures(app)
    assert len(captures) == 6 and len(set(captures)) == 6  # each capture exactly once
