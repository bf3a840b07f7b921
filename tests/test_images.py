"""labelsieve.images: the one place untrusted image bytes are decoded, and where crops and encodings are made."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from support import bomb_png, encode, noise, solid
from viam.proto.app.datasync import DataCaptureMetadata, SensorData

from labelsieve import images
from labelsieve.camera.media import MediaConfig, MediaSource
from labelsieve.capture.format import read_capture, write_capture
from labelsieve.dataset.frames import frames_of
from labelsieve.detect.fast import OnnxModel
from labelsieve.errors import ConfigError, InputError
from labelsieve.viam.commands import parse_detect, parse_verify


def test_decode_is_full_rgb_and_errors_name_the_source_not_a_buffer() -> None:
    decoded = images.decode(encode(solid("red").convert("L"), "PNG"), where="cam frame")
    assert decoded.mode == "RGB" and decoded.size == (640, 480)
    for data, reason in [(b"\xff\xd8 not a jpeg", "not a JPEG, PNG or other image format"),
                         (encode(noise())[:300], "Truncated"), (b"", "0 bytes")]:
        with pytest.raises(InputError) as caught:
            images.decode(data, where="cam frame")
        message = str(caught.value)
        assert message.startswith("cam frame: ") and reason in message
        assert f"({len(data)} bytes)" in message or reason == "Truncated"  # a torn file fails at decode, not at open
        assert "BytesIO" not in message and "0x" not in message


def test_a_decompression_bomb_is_refused_from_its_header_naming_limit_and_fix() -> None:
    bomb = bomb_png()
    with pytest.raises(InputError) as caught:
        images.decode(bomb, where="frames/huge.png")
    message = str(caught.value)
    assert message.startswith("frames/huge.png: ") and "196,000,000 pixels" in message
    assert f"limit of {images.MAX_PIXELS:,}" in message and "LABELSIEVE_MAX_IMAGE_PIXELS" in message
    with pytest.raises(InputError, match="over the limit of 1,000"):
        images.decode(encode(solid("red", 64, 48)), max_pixels=1000)
    assert images.decode(encode(solid("red", 64, 48)), max_pixels=0).size == (64, 48)  # 0 = no limit


def test_the_default_limit_comes_from_the_environment() -> None:
    code = "from labelsieve import images; print(images.MAX_PIXELS)"
    env = {**os.environ, "LABELSIEVE_MAX_IMAGE_PIXELS": "2e6"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2000000"
    bad = subprocess.run([sys.executable, "-c", code], env={**env, "LABELSIEVE_MAX_IMAGE_PIXELS": "lots"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and ConfigError.__name__ in bad.stderr and "LABELSIEVE_MAX_IMAGE_PIXELS" in bad.stderr


def test_decode_base64_names_the_field() -> None:
    good = base64.b64encode(encode(solid("blue", 32, 24))).decode()
    assert images.decode_base64(good, "detect.images[0]").size == (32, 24)
    for value, problem in [(3, "must be a base64 string, got int"), ("%%%", "is not valid base64"),
                           (base64.b64encode(b"junk").decode(), "could not decode the image (4 bytes)")]:
        with pytest.raises(InputError, match=r"^detect\.images\[0\]") as caught:
            images.decode_base64(value, "detect.images[0]")
        assert problem in str(caught.value)


@pytest.mark.parametrize(("mode", "mime", "magic"), [("RGBA", "image/jpeg", b"\xff\xd8"), ("P", "image/jpeg", b"\xff\xd8"),
                                                     ("RGBA", "image/png", b"\x89PNG"), ("CMYK", "image/png", b"\x89PNG")])
def test_encode_converts_modes_the_format_cannot_store(mode: str, mime: str, magic: bytes) -> None:
    data = images.encode(solid("green", 20, 10).convert(mode), mime)
    assert data.startswith(magic) and images.decode(data).size == (20, 10)
    with pytest.raises(InputError, match="image/gif"):
        images.encode(solid("green"), "image/gif")


def test_fit_keeps_the_aspect_and_copies_only_when_it_resizes() -> None:
    image = solid("red", 640, 480)
    assert images.fit(image, 0) is image and images.fit(image, 640) is image
    assert images.fit(image, 320).size == (320, 240) and images.fit(solid("red", 10, 1000), 100).size == (1, 100)


def test_crop_pads_by_a_fraction_of_the_box_and_clips_to_the_frame() -> None:
    image = noise(100, 80)
    piece, box = images.crop(image, (10, 10, 30, 50), padding=0.5)  # 20x40 box: 10 px and 20 px more each side
    assert box == (0, 0, 40, 70) and piece.size == (40, 70)
    assert images.crop(image, (90.2, 70.5, 120, 95))[1] == (90, 70, 100, 80)  # outward to whole pixels, clipped
    assert piece.tobytes() == image.crop(box).tobytes()
    for bad in [(10, 10, 10, 20), (30, 10, 20, 20), (200, 200, 300, 300), (0, 0, float("nan"), 5), (1, 2, 3)]:
        with pytest.raises(InputError):
            images.crop(image, bad)


def test_data_url_is_a_shrunk_jpeg() -> None:
    url = images.data_url(noise(800, 400), max_side=200)
    assert url.startswith("data:image/jpeg;base64,")
    assert images.decode(base64.b64decode(url.split(",", 1)[1])).size == (200, 100)


def test_importing_every_labelsieve_module_leaves_pils_own_limit_alone() -> None:
    code = """
import importlib, pkgutil, labelsieve
from PIL import Image
for module in pkgutil.walk_packages(labelsieve.__path__, "labelsieve."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print(Image.MAX_IMAGE_PIXELS)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert int(out.stdout.split()[-1]) == (1024 * 1024 * 1024 // 4 // 3)  # PIL's default, untouched


def raw_header(width: int, height: int) -> bytes:
    return b"RGBA" + width.to_bytes(4, "big") + height.to_bytes(4, "big")


def dataset_reader(data: bytes, tmp: Path) -> None:
    header = DataCaptureMetadata(component_type="rdk:component:camera", component_name="cam", method_name="ReadImage",
                                 type=1, mime_type="image/png")
    path = write_capture(tmp, header, [SensorData(binary=data)], name="bomb")
    (problem,) = frames_of(read_capture(path), "bomb.capture")
    assert isinstance(problem, InputError)
    raise problem


def camera(data: bytes, tmp: Path) -> None:
    (tmp / "frames").mkdir()
    (tmp / "frames" / "huge.png").write_bytes(data)
    MediaSource(MediaConfig.parse("cam", {"source": str(tmp / "frames")})).read()


def fast_detector(data: bytes, tmp: Path) -> None:  # the shell opens with open_checked and the model decodes lazily
    from support.onnx_models import yolo_onnx

    OnnxModel(yolo_onnx(tmp / "model.onnx", ["a"])).detect(images.open_checked(data), 0.25, 0.45, 10)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SITES: dict[str, Callable[[bytes, Path], object]] = {
    "images.decode": lambda data, _: images.decode(data),
    "images.open_checked": lambda data, _: images.open_checked(data),
    "images.decode_base64": lambda data, _: images.decode_base64(b64(data), "image"),
    "detectors' do_command": lambda data, _: parse_detect("det", {"images": [b64(data)]}),
    "verifier's do_command": lambda data, _: parse_verify("ver", {"crops": [{"image": b64(data)}]}),
    "fast detector": fast_detector,
    "dataset reader": dataset_reader,
    "camera": camera,
}
BOMBS = {"past PIL's own error (196 MP)": lambda: bomb_png(),
         "past PIL's warning (100 MP)": lambda: bomb_png(10_000, 10_000),
         "a raw RGBA header (400 MP)": lambda: raw_header(20_000, 20_000)}


@pytest.mark.parametrize("bomb", BOMBS)
@pytest.mark.parametrize("site", SITES)
def test_a_decompression_bomb_is_refused_with_labelsieves_message_at_every_decode_site(
        site: str, bomb: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        SITES[site](BOMBS[bomb](), tmp_path)
    message = str(caught.value)
    assert f"pixels is over the limit of {images.MAX_PIXELS:,}" in message and "LABELSIEVE_MAX_IMAGE_PIXELS" in message
    assert Image.MAX_IMAGE_PIXELS == (1024 * 1024 * 1024 // 4 // 3)


def test_a_raw_rgba_frame_is_read_without_a_codec() -> None:
    image = noise().convert("RGB")
    raw = raw_header(*image.size) + image.convert("RGBA").tobytes()
    assert images.decode(raw).tobytes() == image.tobytes()
    with pytest.raises(InputError, match="needs 1,228,800 bytes after its header, got 10"):
        images.decode(raw_header(640, 480) + bytes(10))
