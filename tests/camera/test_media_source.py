"""The media camera's frame source on its own: folders, globs, videos, pacing, looping and encoding."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from support import ROOT, bomb_png, noise

from labelsieve import images
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
    with pytest.raises(InputError, match=r"bad.jpg: could not decode the image \(13 bytes\)"):
        source(source=str(tmp_path)).read()


def test_a_decompression_bomb_in_the_folder_names_the_file_and_the_limit(tmp_path: Path) -> None:
    (tmp_path / "huge.png").write_bytes(bomb_png())
    for attrs, limit in [({}, f"{images.MAX_PIXELS:,}"), ({"max_pixels": 1_000_000}, "1,000,000")]:
        with pytest.raises(InputError) as caught:
            source(source=str(tmp_path), mime_type="image/png", **attrs).read()  # even where it would pass through
        message = str(caught.value)
        assert str(tmp_path / "huge.png") in message and f"over the limit of {limit}" in message
        assert "'max_pixels'" in message
    with pytest.raises(InputError, match=r"over the limit of 178,956,970 .* PIL\.Image\.MAX_IMAGE_PIXELS"):
        source(source=str(tmp_path), mime_type="image/png", max_pixels=0).read()  # 0: PIL's own check still holds
    (tmp_path / "huge.png").write_bytes(bomb_png(10_000, 10_000))  # past labelsieve's 64 MP, within PIL's 179 MP
    assert source(source=str(tmp_path), mime_type="image/png", max_pixels=0).read().width == 10_000  # 0 = no limit


def test_the_cache_holds_frames_as_served_within_its_byte_budget(tmp_path: Path) -> None:
    for i in range(12):
        noise(400, 300, seed=i).save(tmp_path / f"{i:02d}.png")  # ~360 KB each: incompressible
    budget = 1_000_000
    big = source(source=str(tmp_path), mime_type="image/png", cache_bytes=budget)
    for _ in range(30):
        big.read()
        assert big.cache.size <= budget
    assert 0 < len(big.cache) < 12
    small = source(source=str(tmp_path), max_side=64, cache_bytes=budget)  # resized JPEGs: every one fits
    served = [small.read() for _ in range(12)]
    assert len(small.cache) == 12 and small.cache.size == sum(len(f.data) for f in served) < budget
    assert all((f.width, f.height) == (64, 48) for f in served)
    assert len(source(source=str(tmp_path), cache_bytes=0).cache) == 0


@pytest.mark.parametrize(("attrs", "message"), [
    ({"source": "/no/such/dir"}, "'attributes.source' /no/such/dir does not exist"),
    ({"source": "/no/such/*.png"}, "matches no image files"),
    ({"source": "/no/clip.mp4"}, "video /no/clip.mp4 does not exist"),
    ({"source": "webcam:97"}, "webcam /dev/video97 does not exist"),
    ({"source": ".", "fps": -1}, "'attributes.fps' must be 0 or more"),
    ({"source": ".", "mime_type": "image/gif"}, "must be one of 'image/jpeg', 'image/png'"),
    ({"source": ".", "cache_bytes": -1}, "'attributes.cache_bytes' must be 0 or more"),
    ({"source": ".", "max_pixels": 1.5}, "'attributes.max_pixels' must be a whole number"),
    ({"sorce": "."}, "did you mean 'source'?"),
])
def test_bad_sources_are_config_errors(attrs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        MediaConfig.parse("cam", attrs)
    assert message in str(err.value) and str(err.value).startswith("cam: ")


def test_the_camera_names_every_image_after_itself_and_reports_the_file_elsewhere(folder: Path, tmp_path: Path) -> None:
    """viam-server's GetImages collector turns the source name into a label: it must not change from frame to frame."""
    import importlib.util

    from grpclib import GRPCError, Status
    from viam.proto.app.robot import ComponentConfig
    from viam.utils import dict_to_struct

    spec = importlib.util.spec_from_file_location("media_camera_main", ROOT / "modules/media_camera/main.py")
    assert spec and spec.loader
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)

    def camera(name: str, **attrs: object) -> Any:
        return main.MediaCamera.new(ComponentConfig(name=name, attributes=dict_to_struct(attrs)), {})

    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb" / "huge.png").write_bytes(bomb_png())

    async def scenario() -> None:
        cam = camera("front", source=str(folder))
        assert await cam.do_command({"last_frame": {}}) == {"last_frame": None}
        names = [(await cam.get_images())[0][0].name for _ in range(3)]
        assert names == ["front"] * 3
        last = (await cam.do_command({"last_frame": {}}))["last_frame"]
        assert last == {"name": "2.png", "width": 64, "height": 48, "mime_type": "image/jpeg"}
        assert (await cam.get_images(filter_source_names=["front"]))[0] and not (
            await cam.get_images(filter_source_names=["depth"]))[0]
        with pytest.raises(GRPCError) as caught:
            await camera("bombed", source=str(tmp_path / "bomb"), max_pixels=10_000_000.0).get_images()
        assert caught.value.status == Status.INVALID_ARGUMENT
        assert "huge.png" in caught.value.message and "over the limit of 10,000,000" in caught.value.message
        with pytest.raises(GRPCError) as caught:
            await cam.get_point_cloud()
        assert caught.value.status == Status.UNIMPLEMENTED and "get_images" in caught.value.message

    asyncio.run(scenario())
