"""The `do_command` payloads labelsieve's vision services accept, parsed and validated in one place, and built here too
so a caller (the auto-label filter, a script) sends exactly what the services read.

    {"detect": {"images": [<base64 JPEG/PNG>, ...], "query": "person. dog."}}
      -> {"detect": [[{"x_min", "y_min", "x_max", "y_max", "confidence", "class_name"}, ...] per image]}
    {"verify": {"crops": [{"image": <base64>, "question": "..."}, ...], "question": "<default for every crop>"}}
      -> {"verdicts": [{"answer", "confidence", "p_yes"?}, ...]}

Every problem is an `InputError` naming the resource and the field (`detect.images[2]`), or an `UnsupportedError` for
an unknown command.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from labelsieve import images
from labelsieve.detections import Detections
from labelsieve.errors import InputError, UnsupportedError

__all__ = ["DetectRequest", "VerifyRequest", "command_of", "detect_command", "detect_reply", "detections_of_reply",
           "parse_detect", "parse_verify", "verify_command"]


@dataclass(frozen=True)
class DetectRequest:
    images: list[Image.Image]
    #: As sent (a string or a list of class names); the detector validates it. None = the configured classes.
    query: Any


@dataclass(frozen=True)
class VerifyRequest:
    crops: list[Image.Image]
    #: One per crop: the crop's own question, else the request's, else None (the verifier's default applies).
    questions: list[str | None]


def command_of(resource: str, command: Mapping[str, Any], name: str, supported: str) -> Mapping[str, Any]:
    """The body of `{name: {...}}`; any other command is UNIMPLEMENTED, naming what is supported."""
    if set(command) != {name}:
        raise UnsupportedError(f"{resource}: unknown command {sorted(command)}; supported: {supported}")
    body = command[name]
    if not isinstance(body, Mapping):
        raise InputError(f"{resource}: '{name}' must be an object, got {type(body).__name__}")
    return body


def _list(resource: str, body: Mapping[str, Any], where: str, item: str) -> list[Any]:
    value = body.get(where.rpartition(".")[2])
    if not isinstance(value, list) or not value:
        raise InputError(f"{resource}: '{where}' must be a non-empty list of {item}")
    return value


def _question(resource: str, value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{resource}: {where} must be a string, got {value!r}")
    return value


def parse_detect(resource: str, body: Mapping[str, Any], max_pixels: int | None = None) -> DetectRequest:
    encoded = _list(resource, body, "detect.images", "base64 JPEG/PNG strings")
    return DetectRequest([images.decode_base64(e, f"{resource}: detect.images[{i}]", max_pixels)
                          for i, e in enumerate(encoded)], body.get("query"))


def parse_verify(resource: str, body: Mapping[str, Any], max_pixels: int | None = None) -> VerifyRequest:
    default = _question(resource, body.get("question"), "verify.question")
    crops, questions = [], []
    for i, item in enumerate(_list(resource, body, "verify.crops", "{'image': <base64>, 'question': ...} objects")):
        where = f"verify.crops[{i}]"
        if not isinstance(item, Mapping):
            raise InputError(f"{resource}: {where} must be an object with 'image' (base64) and 'question'")
        crops.append(images.decode_base64(item.get("image"), f"{resource}: {where}.image", max_pixels))
        questions.append(_question(resource, item.get("question"), f"{where}.question") or default)
    return VerifyRequest(crops, questions)


def _b64(image: Image.Image) -> str:
    return base64.b64encode(images.encode(image)).decode("ascii")


def detect_command(frames: Sequence[Image.Image], query: str | Sequence[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"images": [_b64(f) for f in frames]}
    if query is not None:
        body["query"] = query if isinstance(query, str) else list(query)
    return {"detect": body}


def verify_command(crops: Sequence[Image.Image], questions: Sequence[str] | str) -> dict[str, Any]:
    asked = [questions] * len(crops) if isinstance(questions, str) else list(questions)
    return {"verify": {"crops": [{"image": _b64(c), "question": q} for c, q in zip(crops, asked, strict=True)]}}


_BOX = ("x_min", "y_min", "x_max", "y_max")


def detect_reply(results: Sequence[Detections]) -> dict[str, Any]:
    return {"detect": [[{**dict(zip(_BOX, map(float, xyxy))), "confidence": conf, "class_name": name}
                        for xyxy, conf, name in dets] for dets in results]}


def detections_of_reply(reply: Mapping[str, Any]) -> list[Detections]:
    """The `detect` reply back as one `Detections` per image."""
    try:
        return [Detections(np.array([[b[k] for k in _BOX] for b in boxes], np.float32).reshape(-1, 4),
                           np.array([b["confidence"] for b in boxes], np.float32),
                           np.array([b["class_name"] for b in boxes], np.str_))
                for boxes in reply["detect"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed detect reply: {type(exc).__name__}: {exc}") from exc
