"""Label quality from recorded filter decisions: matching, precision and recall, the verifier's confusion, threshold
sweeps.

Everything here is computed offline from `FrameRecord`s, each holding the filter's own `Decision` (its proposals and its
per-box, per-rule trace), so a sweep of thresholds never calls a model again and never re-derives what the filter chose:
a recorded answer becomes a label through `Rule.label_for`, the filter's own relabeling. A prediction matches a truth box
of its class at IoU >= 0.5, greedily, most confident first (the COCO convention at one IoU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelsieve.detections import Detections, box_iou
from labelsieve.filter import BoxTrace, Decision, FilterConfig

__all__ = ["FrameRecord", "Score", "confusion", "match", "proposer_labels", "score", "student_report", "sweep",
           "two_stage_labels"]

IOU = 0.5


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    path: Path
    truth: Detections
    decision: Decision  # the filter's own, with its proposals and trace
    propose_s: float
    verify_s: float
    student: Detections | None = None  # the filter's student's boxes on the frame, where the filter has a student

    @property
    def crops(self) -> int:
        """Verifier model calls: one per crop asked about, batched or not."""
        return sum(t.asked == "asked" for t in self.decision.trace)

    def ruled(self) -> Iterable[tuple[BoxTrace, int, float]]:
        """(trace entry, rule, proposer score) of each proposed box under each rule that detects its class."""
        for t in self.decision.trace:
            if t.rule is not None:
                yield t, t.rule, float(self.decision.proposals.confidence[t.box])


@dataclasses.dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"precision": self.precision, "recall": self.recall}


def match(predictions: Detections, truth: Detections) -> tuple[list[bool], list[bool]]:
    """(is each prediction a true positive, is each truth box found)."""
    hit, found = [False] * len(predictions), [False] * len(truth)
    if len(predictions) and len(truth):
        iou = box_iou(predictions.xyxy, truth.xyxy)
        for i in sorted(range(len(predictions)), key=lambda i: -predictions.confidence[i]):
            candidates = [(iou[i, j], j) for j in range(len(truth))
                          if truth.class_name[j] == predictions.class_name[i] and not found[j]]
            best = max(candidates, default=(0.0, -1))
            if best[0] >= IOU:
                hit[i], found[best[1]] = True, True
    return hit, found


def judged(predictions: Detections, classes: Sequence[str]) -> Detections:
    return predictions[np.isin(predictions.class_name, list(classes))]


def score(frames: Iterable[tuple[Detections, Detections]], classes: Sequence[str]) -> dict[str, Score]:
    """Per judged class, over (predictions, truth) per frame; predictions of other classes are not judged."""
    counts = {c: [0, 0, 0] for c in classes}
    for predictions, truth in frames:
        predictions = judged(predictions, classes)
        hit, found = match(predictions, truth)
        for name, h in zip(predictions.class_name.tolist(), hit):
            counts[name][0 if h else 1] += 1
        for name, f in zip(truth.class_name.tolist(), found):
            if not f and name in counts:
                counts[name][2] += 1
    return {c: Score(*n) for c, n in counts.items()}


def student_report(frames: Sequence[FrameRecord], config: FilterConfig, truth_classes: Sequence[str]) -> dict[str, Any]:
    """The student against the teacher's labels (the boxes the filter kept) and against the hand labels, per class, and
    the frames where it disagrees with the teacher by kind (`labelsieve.filter.student.compare`, as active learning
    counts them)."""
    from labelsieve.filter.student import compare

    seen = [f for f in frames if f.student is not None]
    pairs = [(f.student, f) for f in seen if f.student is not None]
    judged_classes = [c for c in config.labels if c in truth_classes]
    disagreeing = {"missed": 0, "extra": 0, "wrong_class": 0, "any": 0}
    for student, f in pairs:
        kinds = compare(student, f.decision.detections).kinds
        disagreeing["any"] += bool(kinds)
        for kind in kinds:
            disagreeing[kind] += 1
    return {"frames": len(seen),
            "against_teacher": {c: s.as_dict() for c, s in score(((s, f.decision.detections) for s, f in pairs),
                                                                 config.labels).items()},
            "against_truth": {c: s.as_dict() for c, s in score(((s, f.truth) for s, f in pairs), judged_classes).items()},
            "frames_disagreeing_with_teacher": disagreeing}


def _labelled(frame: FrameRecord, kept: list[tuple[BoxTrace, str, float]]) -> Detections:
    boxes = frame.decision.proposals.xyxy
    return Detections(boxes[[t.box for t, _, _ in kept]].reshape(-1, 4), np.array([c for _, _, c in kept], np.float32),
                      np.array([label for _, label, _ in kept], np.str_))


def proposer_labels(frame: FrameRecord, config: FilterConfig, min_confidence: float | None = None) -> Detections:
    """Stage 1 alone: every proposal a rule accepts, named with the rule's `label`, as if every answer were yes."""
    return _labelled(frame, [(t, config.rules[r].label, s) for t, r, s in frame.ruled()
                             if s >= (config.rules[r].min_confidence if min_confidence is None else min_confidence)])


def two_stage_labels(frame: FrameRecord, config: FilterConfig, min_confidence: float, verifier_confidence: float
                     ) -> Detections | None:
    """What the filter would keep at these thresholds, or None where a proposal it would ask about was never verified."""
    if frame.decision.outcome.endswith("_failed"):
        return Detections.empty()  # the filter labels nothing on a frame where a stage failed
    kept = []
    for t, r, s in frame.ruled():
        if s < min_confidence:
            continue
        if t.answer is None:
            return None
        label = config.rules[r].label_for(t.answer)
        if label is not None and t.confidence >= verifier_confidence:
            kept.append((t, label, s * t.confidence))
    return _labelled(frame, kept)


def confusion(frames: Iterable[FrameRecord], config: FilterConfig) -> dict[str, dict[str, int]]:
    """Verified proposals: truth (positive = a truth box of the rule's label at IoU >= 0.5) x the verifier's answer."""
    table = {row: {"yes": 0, "no": 0, "unsure": 0} for row in ("positive", "negative")}
    for frame in frames:
        for t, r, _ in frame.ruled():
            if t.answer is None:
                continue
            same = frame.truth.xyxy[frame.truth.class_name == config.rules[r].label]
            box = frame.decision.proposals.xyxy[t.box : t.box + 1]
            positive = len(same) > 0 and float(box_iou(box, same).max()) >= IOU
            table["positive" if positive else "negative"][t.answer] += 1
    return table


def _total(scores: dict[str, Score]) -> Score:
    return Score(*(sum(getattr(s, f) for s in scores.values()) for f in ("tp", "fp", "fn")))


def sweep(frames: Sequence[FrameRecord], config: FilterConfig, classes: Sequence[str],
          proposer_thresholds: Sequence[float], verifier_thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """Precision and recall over all judged classes at each pair of thresholds; the two-stage values are None below the
    configured min_confidence, where the verifier was never asked."""
    rows = []
    for t in proposer_thresholds:
        alone = _total(score(((proposer_labels(f, config, t), f.truth) for f in frames), classes))
        for c in verifier_thresholds:
            labelled = [two_stage_labels(f, config, t, c) for f in frames]
            both = (None if any(k is None for k in labelled)
                    else _total(score(((k or Detections.empty(), f.truth) for k, f in zip(labelled, frames)), classes)))
            rows.append({"min_confidence": t, "verifier_confidence": c, "proposer": alone.as_dict(),
                         "two_stage": both.as_dict() if both else None})
    return rows
