"""The media camera's frame source on its own: folders, globs, videos, pacing, looping and encoding."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from labelsieve.camera.media import MediaConfig, MediaSource
from labelsieve.errors import ConfigError, InputError, SourceExhausted


def source(**attrs: object) -> MediaSource:
    return MediaSource(MediaConfig.parse("cam", attrs))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (64, 48), color).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def colour(data: bytes) -> int:
    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5))
    return int(np.argmax(pixel))


def test_folder_plays_in_name_order_and_loops(folder: Path) -> None:
    cam = source(source=str(folder))
    assert [colour(cam.read().data) for _ in range(4)] == [0, 1, 2, 0]


def test_glob_selects_files_and_png_passes_through_untouched(folder: Path) -> None:
    cam = source(source=str(folder / "[12].png"), mime_type="image/png")
    frame = cam.read()
    assert frame.data == (folder / "1.png").read_bytes() and frame.name == "1.png"
    assert (frame.width, frame.height) == (64, 48)


def test_reencoding_and_resizing(folder: Path) -> None:
    frame = source(source=str(folder), max_side=32).read()
    assert frame.mime_type == "image/jpeg" and frame.data[:2] == b"\xff\xd8" and (frame.width, frame.height) == (32, 24)


def test_no_loop_reports_the_end(folder: Path) -> None:
    cam = source(source=str(folder), loop=False)
    for _ in range(3):
        cam.read()
    with pytest.raises(SourceExhausted, match="no more frames"):
        cam.read()


def test_fps_paces_by_the_clock(folder: Path) -> None:
    now = [100.0]
    cam = MediaSource(MediaConfig.parse("cam", {"source": str(folder), "fps": 2}), clock=lambda: now[0])
    seen = []
    for t in (0.0, 0.2, 0.49, 0.5, 1.2, 1.6):  # seconds since start: frames change every 0.5 s, a slow reader skips
        now[0] = 100.0 + t
        seen.append(colour(cam.read().data))
    assert seen == [0, 0, 0, 1, 2, 0]


def test_video_file_plays_frames_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for value in (0, 120, 240):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    cam = source(source=str(path))
    levels = [int(np.asarray(Image.open(io.BytesIO(cam.read().data)))[..., 0].mean()) for _ in range(4)]
    assert levels[0] < 20 and 100 < levels[1] < 140 and levels[2] > 220 and levels[3] < 20  # then it loops
    assert cam.frame_rate == pytest.approx(10)
    cam.close()
    with pytest.raises(SourceExhausted):
        once = source(source=str(path), loop=False)
        for _ in range(4):
            once.read()


def test_corrupt_image_file_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputError, match="bad.jpg is not a readable image"):
        source(source=str(tmp_path)).read()


@pytest.mark.parametrize(("attrs", "message"), [
    ({"source": "/no/such/dir"}, "'attributes.source' /no/such/dir does not exist"),
    ({"source": "/no/such/*.png"}, "matches no image files"),
    ({"source": "/no/clip.mp4"}, "video /no/clip.mp4 does not exist"),
    ({"source": "webcam:97"}, "webcam /dev/video97 does not exist"),
    ({"source": ".", "fps": -1}, "'attributes.fps' must be 0 or more"),
    ({"source": ".", "mime_type": "image/gif"}, "must be one of 'image/jpeg', 'image/png'"),
    ({"sorce": "."}, "did you mean 'source'?"),
])
def test_bad_sources_are_config_errors(attrs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        MediaConfig.parse("cam", attrs)
    assert message in str(err.value) and str(err.value).startswith("cam: ")
