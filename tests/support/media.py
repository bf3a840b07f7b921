"""Test images: encoded frames made in code, so no test depends on a file it did not write."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["bomb_png", "encode", "frames_folder", "noise", "solid"]


def noise(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def solid(color: str | tuple[int, int, int], width: int = 640, height: int = 480) -> Image.Image:
    return Image.new("RGB", (width, height), color)


def encode(image: Image.Image, format: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def frames_folder(folder: Path, colors: tuple[str, ...] = ("red", "green", "blue"), size: tuple[int, int] = (640, 480)) -> Path:
    """A folder of solid-colour JPEGs named in play order, as the media camera reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, color in enumerate(colors):
        solid(color, *size).save(folder / f"{i:03d}.jpg", quality=90)
    return folder


def bomb_png(width: int = 14_000, height: int = 14_000) -> bytes:
    """A valid, all-black 1-bit PNG of `width` x `height`: a few hundred KB that decode to width x height pixels (a
    decompression bomb). Written row by row, so making it costs little memory."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row, packer = b"\0" * (1 + (width + 7) // 8), zlib.compressobj(9)  # filter byte 0, then the packed pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
