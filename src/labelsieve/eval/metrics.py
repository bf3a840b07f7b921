"""Label quality from recorded stage answers: matching, precision and recall, the verifier's confusion, threshold sweeps.

Everything here is computed offline from `FrameRecord`s, so a sweep of thresholds never calls a model again. A prediction
matches a truth box of its class at IoU >= 0.5, greedily, most confident first (the COCO convention at one IoU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelsieve.detections import box_iou
from labelsieve.filter import FilterConfig

__all__ = ["FrameRecord", "Proposal", "Score", "confusion", "match", "proposer_labels", "score", "sweep", "two_stage_labels"]

IOU = 0.5
Box = tuple[float, float, float, float]
Labelled = tuple[Box, str, float]  # (xyxy, class, confidence)


@dataclasses.dataclass(frozen=True)
class Proposal:
    """One proposed box as one rule saw it; `answer` is None where it was never verified (under the rule's
    min_confidence, or over max_crops_per_frame)."""

    box: Box
    score: float
    rule: int
    answer: str | None = None
    confidence: float = 0.0


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    path: Path
    truth: tuple[tuple[Box, str], ...]
    proposals: tuple[Proposal, ...]
    kept: tuple[Labelled, ...]  # the filter's own decision
    outcome: str
    propose_s: float
    verify_s: float
    crops: int  # verifier model calls: one per crop, batched or not


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


def match(predictions: Sequence[Labelled], truth: Sequence[tuple[Box, str]]) -> tuple[list[bool], list[bool]]:
    """(is each prediction a true positive, is each truth box found)."""
    hit, found = [False] * len(predictions), [False] * len(truth)
    if predictions and truth:
        iou = box_iou(np.array([p[0] for p in predictions]), np.array([t[0] for t in truth]))
        for i in sorted(range(len(predictions)), key=lambda i: -predictions[i][2]):
            candidates = [(iou[i, j], j) for j, t in enumerate(truth) if t[1] == predictions[i][1] and not found[j]]
            best = max(candidates, default=(0.0, -1))
            if best[0] >= IOU:
                hit[i], found[best[1]] = True, True
    return hit, found


def score(frames: Iterable[tuple[Sequence[Labelled], Sequence[tuple[Box, str]]]], classes: Sequence[str]
          ) -> dict[str, Score]:
    """Per judged class, over (predictions, truth) per frame; predictions of other classes are not judged."""
    counts = {c: [0, 0, 0] for c in classes}
    for predictions, truth in frames:
        predictions = [p for p in predictions if p[1] in counts]
        hit, found = match(predictions, truth)
        for p, h in zip(predictions, hit):
            counts[p[1]][0 if h else 1] += 1
        for t, f in zip(truth, found):
            if not f and t[1] in counts:
                counts[t[1]][2] += 1
    return {c: Score(*n) for c, n in counts.items()}


def proposer_labels(frame: FrameRecord, config: FilterConfig, min_confidence: float | None = None) -> list[Labelled]:
    """Stage 1 alone: every proposal a rule accepts, named with the rule's `label`, as if every answer were yes."""
    return [(p.box, config.rules[p.rule].label, p.score) for p in frame.proposals
            if p.score >= (config.rules[p.rule].min_confidence if min_confidence is None else min_confidence)]


def two_stage_labels(frame: FrameRecord, config: FilterConfig, min_confidence: float, verifier_confidence: float
                     ) -> list[Labelled] | None:
    """What the filter would keep at these thresholds, or None where a proposal it would ask about was never verified."""
    if frame.outcome.endswith("_failed"):
        return []  # the filter labels nothing on a frame where a stage failed
    kept = []
    for p in frame.proposals:
        if p.score < min_confidence:
            continue
        if p.answer is None:
            return None
        rule = config.rules[p.rule]
        label = {"yes": rule.label, "no": rule.negative_label}.get(p.answer)
        if label is not None and p.confidence >= verifier_confidence:
            kept.append((p.box, label, p.score * p.confidence))
    return kept


def confusion(frames: Iterable[FrameRecord], config: FilterConfig) -> dict[str, dict[str, int]]:
    """Verified proposals: truth (positive = a truth box of the rule's label at IoU >= 0.5) x the verifier's answer."""
    table = {row: {"yes": 0, "no": 0, "unsure": 0} for row in ("positive", "negative")}
    for frame in frames:
        for p in frame.proposals:
            if p.answer is None:
                continue
            label = config.rules[p.rule].label
            same = [t[0] for t in frame.truth if t[1] == label]
            positive = bool(same) and float(box_iou(np.array([p.box]), np.array(same)).max()) >= IOU
            table["positive" if positive else "negative"][p.answer if p.answer in ("yes", "no") else "unsure"] += 1
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
                    else _total(score(((k or [], f.truth) for k, f in zip(labelled, frames)), classes)))
            rows.append({"min_confidence": t, "verifier_confidence": c, "proposer": alone.as_dict(),
                         "two_stage": both.as_dict() if both else None})
    return rows
