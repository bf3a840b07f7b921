"""The auto-label filter's decision, exactly, over scripted stages (no Viam, no models)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from labelsieve.capture.format import as_annotations, decode_provenance, encode_provenance, from_annotations
from labelsieve.detections import Detections
from labelsieve.errors import ConfigError
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.verify import Verdict

GLASSES = {"detect": "person", "question": "Glasses?", "label": "glasses", "negative_label": "no_glasses"}
HAT = {"detect": "person", "question": "Hat?", "label": "hat"}
CAR = {"detect": "car", "question": "Red car?", "label": "red_car", "min_confidence": 0.5, "padding": 0.0}


def boxes(*rows: tuple[float, float, float, float, float, str]) -> Detections:
    return Detections(np.array([r[:4] for r in rows], np.float32).reshape(-1, 4), np.array([r[4] for r in rows]),
                      np.array([r[5] for r in rows]))


class Stages:
    """A proposer that returns scripted boxes and a verifier that answers by question, both recording their calls."""

    def __init__(self, proposals: Detections, answers: dict[str, tuple[str, float]] | None = None) -> None:
        self.proposals, self.answers = proposals, answers or {}
        self.proposed: list[Frame] = []
        self.asked: list[tuple[tuple[int, int], str]] = []  # (crop size, question)
        self.propose_error: BaseException | None = None
        self.verify_error: BaseException | None = None
        self.delay = 0.0

    async def propose(self, frame: Frame) -> Detections:
        self.proposed.append(frame)
        if self.propose_error:
            raise self.propose_error
        return self.proposals

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        self.asked += [(c.size, q) for c, q in zip(crops, questions)]
        await asyncio.sleep(self.delay)
        if self.verify_error:
            raise self.verify_error
        return [Verdict(*self.answers.get(q, ("unsure", 0.5))) for q in questions]  # type: ignore[arg-type]


def make(stages: Stages, *rules: dict[str, Any], **attrs: Any) -> AutoLabelFilter:
    config = FilterConfig.parse("labeler", {"detector": "gdino", "verifier": "vlm", "rules": list(rules), **attrs})
    return AutoLabelFilter(config, stages.propose, stages.verify, proposer_name="gdino", verifier_name="vlm")


def frame(shade: int = 0, size: tuple[int, int] = (200, 100)) -> Frame:
    return Frame(Image.new("RGB", size, (shade, shade, shade)))


def examine(sieve: AutoLabelFilter, image: Frame | None = None, **kw: Any) -> Any:
    return asyncio.run(sieve.examine(image or frame(), **kw))


def test_yes_relabels_no_becomes_the_negative_label_and_unsure_is_dropped() -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person"), (100, 20, 140, 60, 0.6, "car"), (150, 0, 190, 40, 0.9, "dog")),
                    {"Glasses?": ("no", 0.9), "Hat?": ("yes", 0.7), "Red car?": ("unsure", 0.55)})
    sieve = make(stages, GLASSES, HAT, CAR)
    decision = examine(sieve)
    assert decision.kept and decision.outcome == "kept"
    assert decision.detections.class_name.tolist() == ["no_glasses", "hat"]  # verified negatives are kept as training data
    assert decision.detections.xyxy.tolist() == [[10, 10, 50, 90]] * 2  # the proposer's box, not the padded crop
    assert decision.detections.confidence.tolist() == pytest.approx([0.8 * 0.9, 0.8 * 0.7])
    assert decision.detections.provenance == [
        {"rule": 0, "question": "Glasses?", "proposer": "gdino", "proposer_class": "person", "proposer_score": pytest.approx(0.8),
         "verifier": "vlm", "answer": "no", "verifier_confidence": 0.9, "agreement": pytest.approx(0.72), "crop": [6, 2, 54, 98]},
        {"rule": 1, "question": "Hat?", "proposer": "gdino", "proposer_class": "person", "proposer_score": pytest.approx(0.8),
         "verifier": "vlm", "answer": "yes", "verifier_confidence": 0.7, "agreement": pytest.approx(0.56), "crop": [6, 2, 54, 98]},
    ]
    for p in decision.detections.provenance:  # what the data manager stores in BoundingBox.id comes back whole
        assert p is not None and decode_provenance(encode_provenance(p)) == p
    # one box per rule that asks about it; the dog has no rule; padding 0.1 each side of the person, none on the car
    assert sorted(stages.asked) == [((40, 40), "Red car?"), ((48, 96), "Glasses?"), ((48, 96), "Hat?")]
    assert sieve.stats.as_dict() == {
        "frames_seen": 1, "duplicates_skipped": 0, "boxes_proposed": 3, "crops_over_limit": 0, "verified_yes": 1,
        "verified_no": 1, "verified_unsure": 1, "boxes_kept": 2, "frames_kept": 1, "unresolved": 1, "detector_errors": 0,
        "verifier_errors": 0}
    assert any("no rule detects 'dog'" in r for r in decision.reasons)
    assert any("unsure 0.55 -> dropped" in r for r in decision.reasons)


def test_no_without_a_negative_label_is_dropped_and_nothing_verified_keeps_nothing() -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person")), {"Hat?": ("no", 0.95)})
    decision = examine(make(stages, HAT))
    assert not decision.kept and decision.outcome == "nothing_verified" and len(decision.detections) == 0
    assert decision.detections.provenance == []


def test_min_confidence_and_class_matching() -> None:
    stages = Stages(boxes((0, 0, 20, 20, 0.49, "car"), (20, 0, 40, 20, 0.5, "Car "), (40, 0, 60, 20, 0.29, "person")),
                    {"Red car?": ("yes", 1.0), "Hat?": ("yes", 1.0)})
    decision = examine(make(stages, CAR, HAT))  # HAT keeps the default min_confidence 0.3
    assert decision.detections.xyxy[:, 0].tolist() == [20]  # 0.5 passes 0.5; names match ignoring case and spaces
    assert len(stages.asked) == 1
    assert sum("under rule" in r for r in decision.reasons) == 2


def test_numbers_that_are_not_numbers_never_label() -> None:
    stages = Stages(boxes((0, 0, 20, 20, float("nan"), "person"), (20, 0, 40, 20, 0.9, "person")),
                    {"Hat?": ("yes", float("nan"))})
    sieve = make(stages, HAT)
    decision = examine(sieve)
    assert len(stages.asked) == 1  # the NaN-scored proposal is not verified
    assert decision.outcome == "nothing_verified" and sieve.stats.verified_unsure == 1  # a "yes" without a confidence


def test_max_crops_keeps_the_most_confident_proposals() -> None:
    stages = Stages(boxes(*[(i * 10, 0, i * 10 + 10, 10, s, "person") for i, s in enumerate([0.4, 0.9, 0.6, 0.8])]),
                    {"Hat?": ("yes", 1.0)})
    sieve = make(stages, HAT, max_crops_per_frame=2)
    decision = examine(sieve)
    assert decision.detections.confidence.tolist() == pytest.approx([0.9, 0.8])
    assert len(stages.asked) == 2 and sieve.stats.crops_over_limit == 2


def test_no_candidates_means_no_verifier_call() -> None:
    stages = Stages(boxes((0, 0, 20, 20, 0.9, "dog")))
    decision = examine(make(stages, HAT))
    assert decision.outcome == "nothing_verified" and stages.asked == []


def test_the_gate_skips_near_duplicates_of_the_last_frame_examined() -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person")), {"Hat?": ("yes", 0.9)})
    sieve = make(stages, HAT, duplicate_threshold=0.02)

    async def run() -> list[Any]:
        decisions = [await sieve.examine(frame(shade)) for shade in (100, 102, 104, 106, 104, 0)]  # +0.008 a frame: a drift
        return [*decisions, await sieve.examine(frame(0), gate=False)]  # an image sent on purpose: always examined

    decisions = asyncio.run(run())
    assert [d.outcome for d in decisions] == ["kept", "duplicate", "duplicate", "kept", "duplicate", "kept", "kept"]
    assert len(stages.proposed) == 4  # no model ran for a skipped frame
    assert sieve.stats.duplicates_skipped == 3 and sieve.stats.frames_seen == 7
    assert decisions[1].reasons == ("differs from the last frame examined by 0.0078, under duplicate_threshold 0.02",)


def test_the_gate_is_off_at_zero_and_a_failed_frame_does_not_move_it() -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person")), {"Hat?": ("yes", 0.9)})
    off = make(stages, HAT, duplicate_threshold=0)
    assert [examine(off, frame(7)).outcome for _ in range(3)] == ["kept"] * 3

    sieve = make(stages, HAT)
    stages.propose_error = RuntimeError("detector down")
    assert examine(sieve, frame(50)).outcome == "detector_failed"
    stages.propose_error = None
    assert examine(sieve, frame(50)).outcome == "kept"  # the failed frame was never examined, so this is no duplicate
    assert examine(sieve, frame(50)).outcome == "duplicate"


@pytest.mark.parametrize("stage", ["detector", "verifier"])
@pytest.mark.parametrize("fault", ["error", "timeout"])
def test_a_failing_or_slow_stage_labels_nothing_and_the_filter_goes_on(stage: str, fault: str) -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person")), {"Hat?": ("yes", 0.9)})
    sieve = make(stages, HAT, detector_timeout=0.2, verifier_timeout=0.2, duplicate_threshold=0)
    if stage == "detector" and fault == "error":
        stages.propose_error = ConnectionError("detector unreachable")
    elif stage == "detector":
        async def slow(_: Frame) -> Detections:
            await asyncio.sleep(5)
            return stages.proposals
        sieve.propose = slow
    elif fault == "error":
        stages.verify_error = ConnectionError("verifier unreachable")
    else:
        stages.delay = 5
    decision = examine(sieve)
    assert decision.outcome == f"{stage}_failed" and not decision.kept and len(decision.detections) == 0
    assert ("unreachable" if fault == "error" else "no answer within 0.2 s") in decision.reasons[0]
    assert getattr(sieve.stats, f"{stage}_errors") == 1 and sieve.stats.frames_kept == 0
    assert stage == "verifier" or stages.asked == []
    stages.propose_error = stages.verify_error = None
    stages.delay = 0
    sieve.propose = stages.propose
    assert examine(sieve).kept


def test_a_verifier_answering_the_wrong_number_of_verdicts_labels_nothing() -> None:
    stages = Stages(boxes((10, 10, 50, 90, 0.8, "person")))

    async def short(crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        return []

    sieve = make(stages, HAT)
    sieve.verify = short
    decision = examine(sieve)
    assert decision.outcome == "verifier_failed" and "answered 0 verdicts for 1 crops" in decision.reasons[0]


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({"rules": []}, "attributes.rules"),
        ({"rules": [{"detect": "person", "question": "Glasses?"}]}, "attributes.rules[0].label"),
        ({"rules": [HAT, {**GLASSES, "negative_label": "glasses"}]}, "attributes.rules[1].negative_label"),
        ({"rules": [{**HAT, "min_confidence": 2}]}, "attributes.rules[0].min_confidence"),
        ({"rules": [{**HAT, "lable": "x"}]}, "attributes.rules[0].lable"),
        ({"rules": [{**HAT, "label": "unsure"}]}, "attributes.rules[0].label"),
        ({"rules": [HAT], "duplicate_threshold": -1}, "attributes.duplicate_threshold"),
        ({"rules": [HAT], "verifier_timeout": 0}, "attributes.verifier_timeout"),
        ({"rules": [HAT], "max_crops_per_frame": 0}, "attributes.max_crops_per_frame"),
    ],
)
def test_bad_attributes_name_the_field(attrs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        FilterConfig.parse("labeler", {"detector": "gdino", "verifier": "vlm", **attrs})
    assert err.value.resource == "labeler" and err.value.field == field


def test_the_decision_traces_every_proposed_box_under_every_rule() -> None:
    """What eval reads instead of re-deriving the filter: asked or why not, the verdict as answered and as read, the label."""
    stages = Stages(boxes((0, 0, 20, 20, 0.9, "person"), (20, 0, 40, 20, 0.2, "person"), (40, 0, 60, 20, 0.8, "dog"),
                          (60, 0, 80, 20, 0.7, "person"), (80, 0, 99, 20, 0.6, "person")),
                    {"Glasses?": ("no", 0.8), "Hat?": ("yes", float("nan"))})
    decision = examine(make(stages, GLASSES, HAT, max_crops_per_frame=4))
    trace = {(t.box, t.rule): t for t in decision.trace}
    assert len(decision.trace) == 9 and len(decision.proposals) == 5
    assert {k: t.asked for k, t in trace.items()} == {
        (0, 0): "asked", (0, 1): "asked", (3, 0): "asked", (3, 1): "asked", (1, 0): "under_min_confidence",
        (1, 1): "under_min_confidence", (2, None): "no_rule", (4, 0): "over_max_crops_per_frame",
        (4, 1): "over_max_crops_per_frame"}
    asked = [t for t in decision.trace if t.asked == "asked"]
    assert [(t.box, t.rule) for t in asked] == [(0, 0), (0, 1), (3, 0), (3, 1)]  # the order the crops went out
    assert [(t.answer, t.confidence, t.label) for t in asked[:2]] == [("no", pytest.approx(0.8), "no_glasses"),
                                                                      ("unsure", 0.0, None)]
    assert asked[1].verdict is not None and asked[1].verdict.answer == "yes"  # as answered; read as unsure (NaN)
    assert all(t.verdict is None and t.label is None for t in decision.trace if t.asked != "asked")
    assert decision.detections.class_name.tolist() == [t.label for t in asked if t.label]
    assert len(decision.reasons) == len(decision.trace)


def test_a_failed_verifier_leaves_the_trace_unanswered_and_frame_metadata_rides_on_the_boxes() -> None:
    stages = Stages(boxes((0, 0, 20, 20, 0.9, "person")), {"Hat?": ("yes", 0.9)})
    sieve = make(stages, HAT)
    kept = examine(sieve, Frame(Image.new("RGB", (100, 100)), metadata={"source": "a.jpg", "time": 5.0}))
    assert kept.detections.metadata == {"source": "a.jpg", "time": 5.0}
    stages.verify_error = RuntimeError("down")
    failed = examine(sieve, gate=False)
    assert failed.outcome == "verifier_failed" and len(failed.detections) == 0
    assert [(t.asked, t.verdict) for t in failed.trace] == [("asked", None)] and len(failed.proposals) == 1


def test_asked_about_boxes_left_unresolved_are_ignore_regions_never_background() -> None:
    """Issue 19: a kept frame must never teach that an unresolved object is background."""
    stages = Stages(boxes((0, 0, 20, 20, 0.9, "person"), (20, 0, 40, 20, 0.8, "person"), (40, 0, 60, 20, 0.7, "person"),
                          (60, 0, 80, 20, 0.6, "person"), (80, 0, 99, 20, 0.2, "person")))
    answers = iter([("yes", 0.9), ("unsure", 0.6), ("no", 0.9)])  # in crop order: most confident first

    async def verify(crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        return [Verdict(*next(answers)) for _ in crops]  # type: ignore[misc]

    config = FilterConfig.parse("labeler", {"detector": "gdino", "verifier": "vlm", "rules": [GLASSES],
                                            "max_crops_per_frame": 3})
    sieve = AutoLabelFilter(config, stages.propose, verify)
    decision = examine(sieve)
    assert decision.kept and decision.detections.class_name.tolist() == ["glasses", "no_glasses"]
    # box 1 unsure, box 3 over max_crops_per_frame; box 4 under min_confidence was never asked about; "no" is resolved
    assert decision.ignore.xyxy[:, 0].tolist() == [20, 60] and decision.ignore.class_name.tolist() == ["glasses"] * 2
    assert [p and p["why"] for p in decision.ignore.provenance] == ["unsure", "over_max_crops_per_frame"]
    assert sieve.stats.unresolved == 1
    # the decision's detections are the whole labeled frame: stored as they are, the ignore regions come back beside them
    stored = from_annotations(as_annotations(decision.detections, 200, 100), 200, 100)
    assert stored.class_name.tolist() == ["glasses", "no_glasses"]
    assert stored.metadata["ignore"].xyxy[:, 0].tolist() == pytest.approx([20, 60])
