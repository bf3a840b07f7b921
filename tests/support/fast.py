"""The fast detector as tests configure it: a service entry, a machine around it, a frame of the synthetic scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.machine import module
from support.media import encode
from support.scenes import scene_frames

LOW = 0.001  # a 3-epoch model is unsure of everything; a low threshold still gives boxes to compare


def fast(name: str, model_path: Path | str, **attrs: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": "labelsieve:vision:fast-detector",
            "attributes": {"model_path": str(model_path), "confidence": LOW, "max_detections": 20, **attrs}}


def config(*services: dict[str, Any]) -> dict[str, Any]:
    return {"modules": [module("fast-detector")], "services": list(services)}


def frame_jpeg(scene: int = 100, size: int = 64) -> bytes:
    return encode(scene_frames(scene, 1, size)[0][0], quality=95)
