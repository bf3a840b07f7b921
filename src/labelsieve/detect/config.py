"""Attributes of the grounding detector, shared by the Viam module (`validate_config`, `new`) and Python callers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from labelsieve.attributes import Attributes, FieldProblem, did_you_mean

__all__ = ["GroundingDetectorConfig", "Threshold", "parse_query"]

#: One number for every class, or `{class: number}`; classes left out of a mapping get the backend's default.
Threshold = float | dict[str, float]


def parse_query(query: str | Sequence[str]) -> tuple[str, ...]:
    """`"person. dog."` and `["person", "dog"]` -> `("person", "dog")`: stripped, empty parts dropped, duplicates once.

    A list item holding '.' is refused rather than split, because Grounding DINO reads '.' as the class separator and the
    box would come back under a fragment of the item.
    """
    if isinstance(query, str):
        parts = query.split(".")
    elif isinstance(query, (list, tuple)):
        parts = list(query)
        for part in parts:
            if not isinstance(part, str):
                raise ValueError(f"class names must be strings, got {part!r}")
            if "." in part:
                raise ValueError(f"class name {part!r} contains '.'; pass one name per list item, without dots")
    else:
        raise ValueError(f"expected a string like \"person. dog.\" or a list of class names, got {query!r}")
    classes = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not classes:
        raise ValueError(f"no class names in {query!r}; expected e.g. \"person. dog.\" or [\"person\", \"dog\"]")
    return classes


@dataclass(frozen=True)
class GroundingDetectorConfig(Attributes):
    """Stage 1 of auto-labeling: propose boxes for text classes with Grounding DINO or OWLv2.

    `imgsz` (formerly `input_size`) is the resized image's shortest side (Grounding DINO) or square side (OWLv2). Left unset it is 480 for
    Grounding DINO, which lies inside its multi-scale training range (480-800) and equals a VGA frame's height, so a
    640x480 camera frame is not upscaled (800 costs ~3x the CPU time for no extra pixels); and the native 960 for OWLv2,
    which was trained at one size only (other sizes interpolate its position embeddings).

    `quantize: int8` applies dynamic int8 quantization to the linear layers, on the CPU only. Its accuracy is unverified:
    no real weights were available when it was written; compare against `none` on your own frames before relying on it.
    """

    model: str = "IDEA-Research/grounding-dino-tiny"
    revision: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    classes: tuple[str, ...] = ()
    default_query: str | None = None
    box_threshold: Threshold | None = None
    text_threshold: Threshold | None = None
    nms_iou: float = 0.5
    max_detections: int = 100
    imgsz: int | None = None
    #: Frames per forward. Unset: 4 on a GPU, 1 on a CPU, where batching measured 1.1-1.4x slower per frame.
    batch_size: int | None = None
    quantize: Literal["none", "int8"] = "none"
    camera_name: str | None = None

    renamed: ClassVar[Mapping[str, str]] = {"input_size": "imgsz"}

    def check(self) -> None:
        if self.classes and self.default_query is not None:
            raise FieldProblem("default_query", "cannot be set together with 'classes'", "keep one of the two")
        for name, value in (("classes", self.classes), ("default_query", self.default_query)):
            if value is not None and value != ():
                try:
                    parse_query(value)
                except ValueError as exc:
                    raise FieldProblem(name, str(exc)) from None
        for name in ("box_threshold", "text_threshold"):
            self._check_threshold(name, getattr(self, name))
        if not 0.0 < self.nms_iou <= 1.0:
            raise FieldProblem("nms_iou", f"must be in (0, 1], got {self.nms_iou}", "1 keeps every overlapping box")
        for name, low in (("max_detections", 1), ("batch_size", 1), ("imgsz", 64)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise FieldProblem(name, f"must be at least {low}, got {value}")
        if self.quantize == "int8" and self.device == "cuda":
            raise FieldProblem("quantize", "int8 runs on the CPU only", "set device to 'cpu' or quantize to 'none'")
        if self.quantize == "int8" and self.dtype not in ("auto", "float32"):
            raise FieldProblem("quantize", f"int8 quantizes a float32 model, not {self.dtype}", "set dtype to 'float32'")

    @property
    def configured_classes(self) -> tuple[str, ...]:
        """The classes detected when a call names none; empty when every call must bring its query."""
        if self.classes:
            return parse_query(self.classes)
        return parse_query(self.default_query) if self.default_query else ()

    def _check_threshold(self, name: str, value: Threshold | None) -> None:
        if value is None:
            return
        per_class = isinstance(value, Mapping)
        known = self.configured_classes
        pairs: list[tuple[str, float]] = list(value.items()) if isinstance(value, Mapping) else [("", value)]
        for cls, number in pairs:
            if per_class and known and cls not in known:
                hint = did_you_mean(cls, known) or f"configured classes: {', '.join(known)}"
                raise FieldProblem(f"{name}.{cls}", f"names class {cls!r}, which is not configured", hint)
            if not 0.0 <= number <= 1.0:
                raise FieldProblem(f"{name}.{cls}" if per_class else name, f"must be between 0 and 1, got {number}")

    def threshold(self, name: Literal["box_threshold", "text_threshold"], cls: str, default: float) -> float:
        value = getattr(self, name)
        if isinstance(value, Mapping):
            return float(value.get(cls, default))
        return default if value is None else float(value)
