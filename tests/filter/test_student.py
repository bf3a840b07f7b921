"""Active learning, exactly: stand-in students of known errors in front of an oracle teacher, so every disagreement the
policy catches or misses is counted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from labelsieve.detections import Detections
from labelsieve.errors import ConfigError
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.filter.student import StudentPolicy, compare
from labelsieve.verify import Verdict

RULE = {"detect": "person", "question": "Glasses?", "label": "glasses", "negative_label": "no_glasses"}


def dets(*rows: tuple[float, float, float, float, float, str]) -> Detections:
    return Detections(np.array([r[:4] for r in rows], np.float32).reshape(-1, 4), np.array([r[4] for r in rows]),
                      np.array([r[5] for r in rows]))


def test_compare_names_each_kind_of_disagreement() -> None:
    teacher = dets((0, 0, 10, 10, 1, "glasses"), (20, 0, 30, 10, 1, "no_glasses"), (40, 0, 50, 10, 1, "glasses"))
    student = dets((1, 0, 10, 10, 0.9, "glasses"), (20, 0, 30, 10, 0.9, "glasses"), (60, 0, 70, 10, 0.9, "glasses"))
    c = compare(student, teacher)
    assert (c.matched, c.wrong_class, c.missed, c.extra) == (((0, 0),), ((1, 1),), (2,), (2,))
    assert c.kinds == ("missed", "extra", "wrong_class")
    assert compare(teacher, teacher).kinds == ()
    assert compare(Detections.empty(), teacher).missed == (0, 1, 2)


class World:
    """Frame i holds people at known places; person j of frame i wears glasses unless (i + j) % 3 == 0. The teacher is
    an oracle (its proposer finds every person, its verifier answers by the crop's colour: the truth painted in)."""

    def __init__(self, frames: int = 30) -> None:
        self.truth: list[Detections] = []
        self.frames: list[Frame] = []
        for i in range(frames):
            people = 1 + i % 2
            rows = [(10 + 60 * j, 10, 50 + 60 * j, 90, 1.0, "glasses" if (i + j) % 3 else "no_glasses")
                    for j in range(people)]
            image = Image.new("RGB", (200, 100), (i * 7 % 255, 0, 0))
            for x0, y0, x1, y1, _, label in rows:
                image.paste((0, 255, 0) if label == "glasses" else (0, 0, 255), (int(x0), int(y0), int(x1), int(y1)))
            self.truth.append(dets(*rows))
            self.frames.append(Frame(image))
        self.teacher_calls = 0
        self.index = {id(frame): i for i, frame in enumerate(self.frames)}

    async def propose(self, frame: Frame) -> Detections:
        self.teacher_calls += 1
        truth = self.truth[self.index[id(frame)]]
        return Detections(truth.xyxy, np.full(len(truth), 0.9, np.float32), np.full(len(truth), "person"))

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        return [Verdict("yes" if c.getpixel((c.width // 2, c.height // 2))[1] > 128 else "no", 1.0) for c in crops]

    def policy(self, student: object, **attributes: object) -> StudentPolicy:
        config = FilterConfig.parse("labeler", {"detector": "gdino", "verifier": "vlm", "rules": [RULE],
                                                "student": "fast", "duplicate_threshold": 0, **attributes})
        teacher = AutoLabelFilter(config, self.propose, self.verify)
        return StudentPolicy(config, student, teacher)  # type: ignore[arg-type]

    def student(self, edit: object) -> object:
        async def answer(frame: Frame) -> Detections:
            return edit(self.truth[self.index[id(frame)]])  # type: ignore[operator,no-any-return]
        return answer

    def run(self, policy: StudentPolicy) -> list[bool]:
        async def all_frames() -> list[bool]:
            return [(await policy.examine(f)).keep for f in self.frames]
        return asyncio.run(all_frames())


def confident(truth: Detections, score: float = 0.9) -> Detections:
    return Detections(truth.xyxy, np.full(len(truth), score, np.float32), truth.class_name)


def test_a_student_that_misses_a_class_is_caught_on_every_sampled_frame() -> None:
    world = World()
    no_negatives = world.student(lambda t: confident(t[t.class_name != "no_glasses"]))
    policy = world.policy(no_negatives, teacher_sample_rate=1.0, novelty_window=0)
    kept = world.run(policy)
    expected = [bool((t.class_name == "no_glasses").any()) for t in world.truth]
    stats = policy.stats.as_dict()
    assert stats["disagreements"] == {"missed": sum(expected), "extra": 0, "wrong_class": 0}
    assert stats["frames_disagreed"] == sum(expected)
    assert stats["agreements_kept"] == len(expected) - sum(expected)
    assert kept == [True] * len(expected)  # disagreements, and every sampled agreement
    assert stats["teacher_calls"] == world.teacher_calls == len(expected)
    missed = sum(int((t.class_name == "no_glasses").sum()) for t in world.truth)
    found = sum(len(t) for t in world.truth) - missed
    assert stats["student_recall"] == pytest.approx(found / (found + missed))
    assert stats["student_precision"] == 1.0


def test_unsure_extra_boxes_send_exactly_those_frames_to_the_teacher() -> None:
    world = World()

    def add_ghost(truth: Detections) -> Detections:
        i = next(k for k, t in enumerate(world.truth) if t is truth)
        ghost = dets((150, 10, 190, 90, 0.5, "glasses")) if i % 5 == 0 else Detections.empty()
        return Detections.merge([confident(truth), ghost])

    policy = world.policy(world.student(add_ghost), teacher_sample_rate=0.0, novelty_window=0)
    results = asyncio.run(_decisions(policy, world.frames))
    ghosts = [i % 5 == 0 for i in range(len(world.frames))]
    assert [r.keep for r in results] == ghosts
    assert [r.teacher is not None for r in results] == ghosts
    assert policy.stats.teacher_calls_saved == ghosts.count(False)
    assert policy.stats.disagreements == {"missed": 0, "extra": ghosts.count(True), "wrong_class": 0}
    kept = results[0]
    assert kept.provenance["kind"] == ["extra"] and kept.provenance["teacher_reasons"] == ["unsure"]
    assert [row[4] for row in kept.provenance["student_boxes"]] == ["no_glasses", "glasses"]
    assert kept.detections.class_name.tolist() == ["no_glasses"]  # the teacher's labels; the ghost is background


async def _decisions(policy: StudentPolicy, frames: list[Frame]) -> list:  # type: ignore[type-arg]
    return [await policy.examine(f) for f in frames]


def test_a_new_class_or_count_sends_the_frame_to_the_teacher() -> None:
    world = World(6)
    policy = world.policy(world.student(confident), teacher_sample_rate=0.0, novelty_window=50)
    results = asyncio.run(_decisions(policy, world.frames))
    # frames alternate one and two people; their class signatures repeat with period 6 (people x glasses pattern)
    signatures = [tuple(sorted(t.class_name.tolist())) for t in world.truth]
    first_seen = [s not in signatures[:i] for i, s in enumerate(signatures)]
    assert [r.teacher is not None for r in results] == first_seen
    assert policy.stats.teacher_reasons["novel"] == sum(first_seen)
    assert not any(r.keep for r in results)  # a perfect student: nothing to learn, no sampled agreement


def test_a_teacher_that_cannot_settle_a_frame_never_labels_it() -> None:
    world = World(4)

    async def unsure(crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        return [Verdict("unsure", 0.5) for _ in crops]

    world.verify = unsure  # type: ignore[method-assign]
    policy = world.policy(world.student(lambda t: confident(t[:0])), teacher_sample_rate=1.0, novelty_window=0)
    assert world.run(policy) == [False] * 4
    assert policy.stats.teacher_unsettled == 4 and policy.stats.disagreements["missed"] == 0


def test_a_failing_student_asks_the_teacher() -> None:
    world = World(3)

    async def broken(frame: Frame) -> Detections:
        raise RuntimeError("model file gone")

    policy = world.policy(broken, teacher_sample_rate=0.0, novelty_window=0)
    assert world.run(policy) == [True] * 3  # every teacher box is a miss of an empty student
    assert policy.stats.student_errors == 3 and policy.stats.teacher_calls == 3


@pytest.mark.parametrize(("attrs", "field"), [({"student_unsure": [0.8, 0.2]}, "student_unsure"),
                                               ({"teacher_sample_rate": 2}, "teacher_sample_rate"),
                                               ({"novelty_window": -1}, "novelty_window")])
def test_bad_student_attributes_name_the_field(attrs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"attributes.{field}"):
        FilterConfig.parse("labeler", {"detector": "d", "verifier": "v", "rules": [RULE], "student": "fast", **attrs})

