"""The auto-label filter's decision, over two async callables so it runs (and is tested) without Viam:

    propose(frame) -> Detections                      stage 1: boxes for base classes ("person")
    verify(crops, questions) -> [Verdict, ...]        stage 2: one yes / no / unsure per crop

A frame goes through the near-duplicate gate, then the proposer; each proposed box that a rule asks about (its class is
the rule's `detect`, its score at least the rule's `min_confidence`) is cropped with the rule's padding, and the crops
go to the verifier together. "yes" relabels a box with the rule's `label`, "no" with its `negative_label` or drops it,
"unsure" (or any other answer) drops it. An asked-about box left unresolved (unsure, or over `max_crops_per_frame`) becomes
an ignore region of a kept frame (`Decision.ignore`), never background and never a label: a dataset skips such frames or
fills the regions. A stage that fails or runs past its timeout labels nothing: the whole frame is
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

__all__ = ["AutoLabelFilter", "BoxTrace", "Decision", "FilterStats", "Frame", "Proposer", "VerifyCrops", "read_verdict"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Frame:
    """The filter's input: its pixels (for the gate and the crops), when it arrived encoded its bytes (so a proposer behind
    an RPC can forward them without decoding and re-encoding), and where it came from (`Detections.metadata` keys: source,
    time, stream), which the decision's boxes carry on."""

    image: Image.Image
    data: bytes = b""
    mime_type: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # where it came from: the decision's metadata


Proposer = Callable[[Frame], Awaitable[Detections]]
VerifyCrops = Callable[[Sequence[Image.Image], Sequence[str]], Awaitable[Sequence[Verdict]]]
Outcome = Literal["kept", "nothing_verified", "duplicate", "detector_failed", "verifier_failed"]
Asked = Literal["asked", "no_rule", "under_min_confidence", "over_max_crops_per_frame"]


def read_verdict(verdict: Verdict) -> tuple[Answer, float]:
    """The "sure" test: (answer, confidence) as the filter reads a verdict. Only "yes" or "no" with a finite confidence
    is an answer (clamped to [0, 1]); anything else is ("unsure", 0.0)."""
    confidence = float(verdict.confidence)
    if verdict.answer in ("yes", "no") and math.isfinite(confidence):
        return verdict.answer, min(max(confidence, 0.0), 1.0)
    return "unsure", 0.0


@dataclasses.dataclass(frozen=True)
class BoxTrace:
    """One proposed box under one rule that detects its class (`rule` None: no rule does): whether the verifier was
    asked (or why not), its verdict as answered and as the filter read it, and the label that gave (None: dropped).
    Eval reads these instead of re-deriving the filter's choices."""

    box: int  # index into `Decision.proposals`
    rule: int | None
    asked: Asked
    verdict: Verdict | None = None  # None where not asked, or where the verifier failed
    label: str | None = None

    @property
    def answer(self) -> Answer | None:
        return None if self.verdict is None else read_verdict(self.verdict)[0]

    @property
    def confidence(self) -> float:
        """The verifier's confidence as the filter read it (0 where it was not sure or not asked)."""
        return 0.0 if self.verdict is None else read_verdict(self.verdict)[1]

    def reason(self, proposals: Detections, config: FilterConfig) -> str:
        name, score = str(proposals.class_name[self.box]), float(proposals.confidence[self.box])
        said = f"box {self.box} ({name} {score:.2f})"
        if self.rule is None:
            return f"{said}: no rule detects {name!r}"
        if self.asked == "under_min_confidence":
            return f"{said}: under rule {self.rule}'s min_confidence {config.rules[self.rule].min_confidence}"
        if self.asked == "over_max_crops_per_frame":
            return f"{said}, rule {self.rule}: over max_crops_per_frame {config.max_crops_per_frame}"
        answered = "" if self.verdict is None else f": {self.verdict.answer} {self.verdict.confidence:.2f}"
        return f"{said}, rule {self.rule}{answered} -> {self.label or 'dropped'}"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the filter made of one frame: the verified boxes (confidence = agreement, `data["provenance"]` how each was
    labeled, `metadata` the frame's source and, where it has some, its ignore regions), the proposals it examined
    (clipped to the frame), a trace of every proposed box under every rule, and one reason per trace entry or failure
    (for `do_command({"stats": {}})` and the logs). `detections` is the whole labeled frame: `as_annotations` stores it
    as it is."""

    outcome: Outcome
    detections: Detections
    reasons: tuple[str, ...]
    proposals: Detections = dataclasses.field(default_factory=Detections.empty)
    trace: tuple[BoxTrace, ...] = ()

    @property
    def ignore(self) -> Detections:
        """Each asked-about box left unresolved, named with the label it might have (`data["provenance"]`: rule, why):
        a region of the frame that is neither a label nor background."""
        ignore = self.detections.metadata.get("ignore")
        return ignore if isinstance(ignore, Detections) else Detections.empty()

    @classmethod
    def skipped(cls, outcome: Outcome, reason: str, proposals: Detections | None = None,
                trace: tuple[BoxTrace, ...] = ()) -> Decision:
        return cls(outcome, Detections.empty(), (reason,), Detections.empty() if proposals is None else proposals, trace)

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
    unresolved: int = 0  # kept frames with ignore regions
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
            self.stats.unresolved += bool(len(decision.ignore))
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
        trace = self._select(proposals)
        asked = [(t.box, self.config.rules[t.rule]) for t in trace if t.asked == "asked" and t.rule is not None]
        crops = [crop(frame.image, tuple(proposals.xyxy[box]), rule.padding) for box, rule in asked]
        verdicts: Sequence[Verdict] = ()
        if asked:
            try:
                questions = [rule.question for _, rule in asked]
                verdicts = await asyncio.wait_for(self.verify([c for c, _ in crops], questions), self.config.verifier_timeout)
                if len(verdicts) != len(asked):
                    raise ValueError(f"answered {len(verdicts)} verdicts for {len(asked)} crops")
            except Exception as exc:  # noqa: BLE001 - likewise
                self.stats.verifier_errors += 1
                return self._failed("verifier_failed", self.verifier_name, self.config.verifier_timeout, exc,
                                    proposals, trace)
        if thumb is not None:
            self._gate.examined(thumb)
        return self._label(proposals.with_metadata(**frame.metadata), trace, [box for _, box in crops], verdicts)

    def _failed(self, outcome: Outcome, stage: str, timeout: float, exc: Exception, proposals: Detections | None = None,
                trace: tuple[BoxTrace, ...] = ()) -> Decision:
        why = f"no answer within {timeout} s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        log.warning("frame skipped: %s failed: %s", stage, why)
        return Decision.skipped(outcome, f"{stage} failed: {why}", proposals, trace)

    def _select(self, proposals: Detections) -> tuple[BoxTrace, ...]:
        """Every (box, rule) pair, in box then rule order; the verifier is asked about the most confident proposals
        first, at most `max_crops_per_frame` of them (the "asked" entries, in the order their crops go out)."""
        trace: list[BoxTrace] = []
        candidates: list[BoxTrace] = []
        for box, (_, score, name) in enumerate(proposals):
            rules = [r for r, rule in enumerate(self.config.rules) if rule.detect.strip().lower() == name.strip().lower()]
            if not rules:
                trace.append(BoxTrace(box, None, "no_rule"))
            for r in rules:
                if not score >= self.config.rules[r].min_confidence:  # a NaN score is no proposal
                    trace.append(BoxTrace(box, r, "under_min_confidence"))
                else:
                    candidates.append(BoxTrace(box, r, "asked"))
        candidates.sort(key=lambda t: -proposals.confidence[t.box])  # stable: ties keep box, then rule order
        limit = self.config.max_crops_per_frame
        self.stats.crops_over_limit += max(0, len(candidates) - limit)
        over = [dataclasses.replace(t, asked="over_max_crops_per_frame") for t in candidates[limit:]]
        return (*candidates[:limit], *trace, *over)

    def _label(self, proposals: Detections, trace: tuple[BoxTrace, ...], crops: Sequence[tuple[int, int, int, int]],
               verdicts: Sequence[Verdict]) -> Decision:
        answered = list(trace)
        kept: list[tuple[int, str, Provenance]] = []
        for i, (entry, crop_box, verdict) in enumerate(zip(trace, crops, verdicts)):  # the asked entries come first
            r = entry.rule or 0  # an asked entry always has its rule
            rule, score = self.config.rules[r], float(proposals.confidence[entry.box])
            answer, confidence = read_verdict(verdict)
            self.stats.count_verdict(answer)
            label = rule.label_for(answer)
            answered[i] = dataclasses.replace(entry, verdict=verdict, label=label)
            if label is not None:
                kept.append((entry.box, label, Provenance(
                    rule=r, question=rule.question, proposer=self.proposer_name,
                    proposer_class=str(proposals.class_name[entry.box]), proposer_score=score,
                    verifier=self.verifier_name, answer=answer, verifier_confidence=confidence,  # type: ignore[arg-type]
                    crop=crop_box)))
        ignore = self._unresolved(proposals, answered)
        detections = Detections(
            proposals.xyxy[[box for box, _, _ in kept]].reshape(-1, 4),
            np.array([p.agreement for _, _, p in kept], np.float32),
            np.array([label for _, label, _ in kept], np.str_),
            classes=self.config.labels,
            metadata={**proposals.metadata, **({"ignore": ignore} if len(ignore) else {})},
        ).with_provenance([p.as_dict() for _, _, p in kept])
        outcome: Outcome = "kept" if kept else "nothing_verified"
        return Decision(outcome, detections, tuple(t.reason(proposals, self.config) for t in answered), proposals,
                        tuple(answered))

    def _unresolved(self, proposals: Detections, trace: Sequence[BoxTrace]) -> Detections:
        """Asked-about boxes no answer settled: unsure (as read), or never asked for being over max_crops_per_frame. A
        verified "no" is settled (the object is not the label), and a box under min_confidence was never asked about."""
        open_ = [t for t in trace if t.rule is not None and (
            t.asked == "over_max_crops_per_frame" or (t.asked == "asked" and t.answer == "unsure"))]
        return Detections(proposals.xyxy[[t.box for t in open_]].reshape(-1, 4),
                          proposals.confidence[[t.box for t in open_]],
                          np.array([self.config.rules[t.rule or 0].label for t in open_], np.str_),
                          ).with_provenance([{"rule": t.rule, "why": "unsure" if t.asked == "asked" else t.asked}
                                             for t in open_])
