"""The auto-label filter's decision, over two async callables so it runs (and is tested) without Viam:

    propose(frame) -> Detections                      stage 1: boxes for base classes ("person")
    verify(crops, questions) -> [Verdict, ...]        stage 2: one yes / no / unsure per crop

A frame goes through the near-duplicate gate, then the proposer; each proposed box that a rule asks about (its class is
the rule's `detect`, its score at least the rule's `min_confidence`) is cropped with the rule's padding, and the crops
go to the verifier together. "yes" relabels a box with the rule's `label`, "no" with its `negative_label` or drops it,
"unsure" (or any other answer) drops it. A stage that fails or runs past its timeout labels nothing: the whole frame is
skipped and counted, because a frame stored with some of its objects unverified would teach a model that they are
background.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from labelsieve.detections import Detections
from labelsieve.filter.config import FilterConfig
from labelsieve.filter.gate import DuplicateGate, thumbnail
from labelsieve.filter.provenance import Provenance
from labelsieve.images import crop
from labelsieve.verify.answers import Answer, Verdict

__all__ = ["AutoLabelFilter", "Decision", "FilterStats", "Frame", "Proposer", "VerifyCrops"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame to examine: its pixels (for the gate and the crops) and, when it arrived encoded, its bytes, so a proposer
    behind an RPC can forward them without decoding and re-encoding."""

    image: Image.Image
    data: bytes = b""
    mime_type: str = ""


Proposer = Callable[[Frame], Awaitable[Detections]]
VerifyCrops = Callable[[Sequence[Image.Image], Sequence[str]], Awaitable[Sequence[Verdict]]]
Outcome = Literal["kept", "nothing_verified", "duplicate", "detector_failed", "verifier_failed"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the filter made of one frame: the verified boxes (confidence = agreement), their provenance in the same order,
    and one reason per proposed box or failure, for `do_command({"stats": {}})` and the logs."""

    outcome: Outcome
    detections: Detections
    provenance: tuple[Provenance, ...]
    reasons: tuple[str, ...]

    @classmethod
    def skipped(cls, outcome: Outcome, reason: str) -> Decision:
        return cls(outcome, Detections.empty(), (), (reason,))

    @property
    def kept(self) -> bool:
        return self.outcome == "kept"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "boxes_kept": len(self.detections), "reasons": list(self.reasons)}


@dataclasses.dataclass
class FilterStats:
    frames_seen: int = 0
    duplicates_skipped: int = 0
    boxes_proposed: int = 0
    crops_over_limit: int = 0
    verified_yes: int = 0
    verified_no: int = 0
    verified_unsure: int = 0
    boxes_kept: int = 0
    frames_kept: int = 0
    detector_errors: int = 0
    verifier_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def count_verdict(self, answer: Answer) -> None:
        if answer == "yes":
            self.verified_yes += 1
        elif answer == "no":
            self.verified_no += 1
        else:
            self.verified_unsure += 1


class AutoLabelFilter:
    def __init__(self, config: FilterConfig, propose: Proposer, verify: VerifyCrops, *,
                 proposer_name: str = "detector", verifier_name: str = "verifier") -> None:
        self.config, self.propose, self.verify = config, propose, verify
        self.proposer_name, self.verifier_name = proposer_name, verifier_name
        self.stats = FilterStats()
        self.last: Decision | None = None
        self._gate = DuplicateGate(config.duplicate_threshold)

    async def examine(self, frame: Frame, *, gate: bool = True) -> Decision:
        """Both stages on one frame. With `gate` (camera frames) a near-duplicate of the last frame examined is skipped;
        without it (an image a caller sent on purpose) the frame is always examined and does not move the gate. A frame
        whose examination failed does not become the gate's reference, so the next one like it is examined again."""
        self.stats.frames_seen += 1
        decision = await self._decide(frame, gate)
        self.last = decision
        if decision.kept:
            self.stats.frames_kept += 1
            self.stats.boxes_kept += len(decision.detections)
        return decision

    async def _decide(self, frame: Frame, gate: bool) -> Decision:
        thumb = await asyncio.to_thread(thumbnail, frame.image) if gate else None
        if thumb is not None and self._gate.is_duplicate(difference := self._gate.difference(thumb)):
            self.stats.duplicates_skipped += 1
            return Decision.skipped("duplicate", f"differs from the last frame examined by {difference:.4f}, under "
                                                 f"duplicate_threshold {self.config.duplicate_threshold}")
        try:
            proposals = await asyncio.wait_for(self.propose(frame), self.config.detector_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of a foreign stage skips the frame; the filter keeps running
            self.stats.detector_errors += 1
            return self._failed("detector_failed", self.proposer_name, self.config.detector_timeout, exc)
        proposals = proposals.clip(*frame.image.size)
        self.stats.boxes_proposed += len(proposals)
        asked, reasons = self._select(proposals)
        crops = [crop(frame.image, tuple(proposals.xyxy[box]), self.config.rules[rule].padding) for box, rule in asked]
        verdicts: Sequence[Verdict] = ()
        if asked:
            try:
                questions = [self.config.rules[rule].question for _, rule in asked]
                verdicts = await asyncio.wait_for(self.verify([c for c, _ in crops], questions), self.config.verifier_timeout)
                if len(verdicts) != len(asked):
                    raise ValueError(f"answered {len(verdicts)} verdicts for {len(asked)} crops")
            except Exception as exc:  # noqa: BLE001 - likewise
                self.stats.verifier_errors += 1
                return self._failed("verifier_failed", self.verifier_name, self.config.verifier_timeout, exc)
        if thumb is not None:
            self._gate.examined(thumb)
        return self._label(proposals, asked, [box for _, box in crops], verdicts, reasons)

    def _failed(self, outcome: Outcome, stage: str, timeout: float, exc: Exception) -> Decision:
        why = f"no answer within {timeout} s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        log.warning("frame skipped: %s failed: %s", stage, why)
        return Decision.skipped(outcome, f"{stage} failed: {why}")

    def _select(self, proposals: Detections) -> tuple[list[tuple[int, int]], list[str]]:
        """(box, rule) pairs to verify, most confident proposals first, at most `max_crops_per_frame`."""
        asked, reasons = [], []
        for box, (_, score, name) in enumerate(proposals):
            rules = [r for r, rule in enumerate(self.config.rules) if rule.detect.strip().lower() == name.strip().lower()]
            if not rules:
                reasons.append(f"box {box} ({name} {score:.2f}): no rule detects {name!r}")
            for r in rules:
                if not score >= self.config.rules[r].min_confidence:  # a NaN score is no proposal
                    reasons.append(f"box {box} ({name} {score:.2f}): under rule {r}'s min_confidence "
                                   f"{self.config.rules[r].min_confidence}")
                else:
                    asked.append((box, r))
        asked.sort(key=lambda pair: -proposals.confidence[pair[0]])  # stable: ties keep box, then rule order
        limit = self.config.max_crops_per_frame
        for box, r in asked[limit:]:
            reasons.append(f"box {box} ({proposals.class_name[box]} {proposals.confidence[box]:.2f}), rule {r}: "
                           f"over max_crops_per_frame {limit}")
        self.stats.crops_over_limit += max(0, len(asked) - limit)
        return asked[:limit], reasons

    def _label(self, proposals: Detections, asked: Sequence[tuple[int, int]], crops: Sequence[tuple[int, int, int, int]],
               verdicts: Sequence[Verdict], reasons: list[str]) -> Decision:
        kept: list[tuple[int, str, Provenance]] = []
        for (box, r), crop_box, verdict in zip(asked, crops, verdicts):
            rule, score = self.config.rules[r], float(proposals.confidence[box])
            confidence = float(verdict.confidence)
            sure = verdict.answer in ("yes", "no") and math.isfinite(confidence)  # an answer without a number is no answer
            answer: Answer = verdict.answer if sure else "unsure"
            self.stats.count_verdict(answer)
            label = {"yes": rule.label, "no": rule.negative_label}.get(answer)
            said = f"box {box} ({proposals.class_name[box]} {score:.2f}), rule {r}: {verdict.answer} {verdict.confidence:.2f}"
            if label is None:
                reasons.append(f"{said} -> dropped")
                continue
            reasons.append(f"{said} -> {label}")
            kept.append((box, label, Provenance(
                rule=r, question=rule.question, proposer=self.proposer_name, proposer_class=str(proposals.class_name[box]),
                proposer_score=score, verifier=self.verifier_name, answer=answer,  # type: ignore[arg-type]
                verifier_confidence=min(max(confidence, 0.0), 1.0), crop=crop_box)))
        detections = Detections(
            proposals.xyxy[[box for box, _, _ in kept]].reshape(-1, 4),
            np.array([p.agreement for _, _, p in kept], np.float32),
            np.array([label for _, label, _ in kept], np.str_),
            classes=self.config.labels,
        )
        outcome: Outcome = "kept" if kept else "nothing_verified"
        return Decision(outcome, detections, tuple(p for _, _, p in kept), tuple(reasons))
