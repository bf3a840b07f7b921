"""`Detections`: the one labeled-box value every stage speaks, from the proposer through the filter, capture files and
datasets to eval and review.

Parallel arrays validated once on construction; filtering is indexing (`dets[dets.confidence > 0.5]`) and operations
return new values. How each box was labeled rides inside it (`data["provenance"]`, one dict or None per box) and where the
frame came from in `metadata` (source file and reading, capture time, stream), so neither travels beside the boxes.
Conversions sit at the edges as `from_*` / `as_*` pairs: Viam messages in `labelsieve.viam.convert`, capture annotations in
`labelsieve.capture.format`, COCO and YOLO in `labelsieve.dataset.formats`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Detections", "box_iou"]


def _column(values: Any) -> npt.NDArray[Any]:
    """A per-box data column. Sequences of dicts, tuples or lists become a 1-D object array (one item per box), so that
    provenance records are not spread into a 2-D array by NumPy."""
    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if any(isinstance(v, (dict, list, tuple)) or v is None for v in values):
        return _objects(values)
    return np.asarray(values)


def _objects(values: Sequence[Any]) -> npt.NDArray[Any]:
    column = np.empty(len(values), dtype=object)
    column[:] = list(values)
    return column


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Detections:
    """N boxes in pixel xyxy, with confidence and class name per box, plus optional per-box `data` arrays and frame-level
    `metadata` (kept by indexing, clipping and NMS; on merge, the first part's value of a key wins).

    `classes` fixes the class ids: `class_id[i]` is the index of `class_name[i]` in `classes`. A name the given classes
    lack is appended, in order of first appearance, so ids stay deterministic and nothing is dropped; a caller that needs
    a closed list (a dataset) uses `with_classes(ontology, strict=True)`, which raises instead.
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_name: npt.NDArray[np.str_]
    data: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"expected boxes of shape (N, 4), got {xyxy.shape}")
        n = len(xyxy)
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        class_name = np.asarray(self.class_name, dtype=np.str_).reshape(-1)
        data = {k: _column(v) for k, v in self.data.items()}
        for label, arr in (("confidence", confidence), ("class_name", class_name), *data.items()):
            if len(arr) != n:
                raise ValueError(f"expected {label} of length {n} (one per box), got {len(arr)}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "class_name", class_name)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "classes", tuple(dict.fromkeys([*map(str, self.classes), *class_name.tolist()])))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @classmethod
    def empty(cls, classes: Sequence[str] = (), metadata: dict[str, Any] | None = None) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.str_), classes=tuple(classes),
                   metadata=metadata or {})

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """All boxes in order; `classes` joined in order of first appearance; a `data` key some parts lack is filled
        with None there (its column becomes an object array), so no part's data is dropped."""
        classes = tuple(dict.fromkeys(c for p in parts for c in p.classes))
        metadata = {k: v for p in reversed(parts) for k, v in p.metadata.items()}
        filled = [p for p in parts if len(p)]
        if not filled:
            return cls.empty(classes, metadata)
        keys = dict.fromkeys(k for p in filled for k in p.data)
        return cls(
            np.concatenate([p.xyxy for p in filled]),
            np.concatenate([p.confidence for p in filled]),
            np.concatenate([p.class_name for p in filled]),
            {k: np.concatenate([p.data[k] if k in p.data else np.full(len(p), None, object) for p in filled])
             for k in keys},
            classes,
            metadata,
        )

    @property
    def provenance(self) -> list[dict[str, Any] | None]:
        """How each box was labeled (the filter's record, a review's decision), None where nothing says."""
        column = self.data.get("provenance")
        return [None] * len(self) if column is None else [p if isinstance(p, dict) else None for p in column.tolist()]

    def with_provenance(self, provenance: Sequence[dict[str, Any] | None]) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_name, {**self.data, "provenance": _objects(provenance)},
                          self.classes, self.metadata)

    def with_metadata(self, **metadata: Any) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_name, self.data, self.classes,
                          {**self.metadata, **metadata})

    @property
    def class_id(self) -> npt.NDArray[np.int64]:
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[name] for name in self.class_name.tolist()], dtype=np.int64)

    def with_classes(self, classes: Sequence[str], strict: bool = False) -> Detections:
        """The same boxes with ids from `classes`; names it lacks are appended, or with `strict` raise ValueError."""
        unknown = sorted(set(self.class_name.tolist()) - set(classes))
        if strict and unknown:
            raise ValueError(f"class names {unknown} are not among the classes {list(classes)}")
        return Detections(self.xyxy, self.confidence, self.class_name, self.data, tuple(classes), self.metadata)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | Sequence[int] | npt.NDArray[Any]) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index], self.class_name[index],
                          {k: v[index] for k, v in self.data.items()}, self.classes, self.metadata)

    def __iter__(self) -> Iterator[tuple[npt.NDArray[np.float32], float, str]]:
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), str(self.class_name[i])

    def clip(self, width: int, height: int) -> Detections:
        """Boxes clipped to the image; boxes left with no area are dropped."""
        xyxy = self.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        clipped = Detections(xyxy, self.confidence, self.class_name, self.data, self.classes, self.metadata)
        return clipped[(xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])]

    def sorted(self) -> Detections:
        """Highest confidence first."""
        return self[np.argsort(-self.confidence, kind="stable")]

    def nms(self, iou_threshold: float = 0.5, class_agnostic: bool = False) -> Detections:
        """Greedy non-maximum suppression; class-aware unless `class_agnostic`."""
        if len(self) < 2:
            return self
        order = np.argsort(-self.confidence, kind="stable")
        iou = box_iou(self.xyxy[order], self.xyxy[order])
        if not class_agnostic:
            names = self.class_name[order]
            iou = np.where(names[:, None] == names[None, :], iou, 0.0)
        keep = np.ones(len(order), dtype=bool)
        for i in range(len(order)):
            if keep[i]:
                keep[i + 1 :] &= iou[i, i + 1 :] <= iou_threshold
        return self[order[keep]]
