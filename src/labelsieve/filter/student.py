"""Active learning: the deployed fast detector (the student) chooses which frames the slow models (the teacher) label.

The filter's `student` attribute names the student (any vision service); the student runs on every frame; it is cheap. The teacher (the auto-label filter's proposer and verifier) runs only where
the student is worth checking:

- **unsure**: a student box scores inside `student_unsure` = [low, high), where its answers are closest to a coin toss,
  unless the frame repeats the last one the teacher checked: the student says the same (the same classes, each box at
  IoU >= 0.9) about a picture that differs by less than `STILL` (the near-duplicate gate's measure). A still scene's
  doubt is settled once, as the gate settles a still scene's frames once;
- **novel**: the student's classes and counts on this frame (`{"glasses": 2}`) were not seen on any of the last
  `novelty_window` frames of the stream: a new class, or a count the stream has not shown lately, is where a model trained
  on yesterday's data is most likely wrong;
- **sampled**: a random `teacher_sample_rate` share of the rest, so that agreement keeps being measured and a dataset
  version is not only hard cases.

Where the teacher ran, student and teacher are compared at IoU 0.5: a teacher box no student box overlaps is **missed**,
a student box no teacher box overlaps is **extra**, an overlapping pair of different classes is a **wrong_class**. A frame
with any disagreement is kept with the teacher's labels and the disagreement in its provenance; a sampled frame where they
agree is kept too, marked as an agreement; every other frame is skipped, and the teacher calls it did not need are counted.
A frame the teacher could not settle (a stage failed, an asked-about box left unsure) is never kept: fail closed, as the
filter itself is.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from labelsieve.detections import Detections, box_iou
from labelsieve.filter.config import FilterConfig
from labelsieve.filter.core import AutoLabelFilter, Decision, Frame
from labelsieve.filter.gate import thumbnail

__all__ = ["Comparison", "DisagreementKind", "StudentDecision", "StudentPolicy", "StudentStats", "compare",
           "teacher_settled"]

DisagreementKind = Literal["missed", "extra", "wrong_class"]
Reason = Literal["unsure", "novel", "sampled"]
IOU = 0.5
#: Thumbnail difference (mean absolute, 0-1) under which a frame is the same scene as the last one the teacher checked:
#: twice the gate's default, so sensor noise and compression stay under it while a moved object does not.
STILL = 0.02


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Student against teacher on one frame: (student box, teacher box) index pairs by kind."""

    matched: tuple[tuple[int, int], ...]
    wrong_class: tuple[tuple[int, int], ...]
    missed: tuple[int, ...]  # teacher boxes
    extra: tuple[int, ...]  # student boxes

    @property
    def kinds(self) -> tuple[DisagreementKind, ...]:
        found: list[DisagreementKind] = []
        for kind in ("missed", "extra", "wrong_class"):
            if getattr(self, kind):
                found.append(kind)
        return tuple(found)


def compare(student: Detections, teacher: Detections, iou: float = IOU) -> Comparison:
    """Greedy one-to-one matching, most overlapping pairs first, regardless of class; a matched pair whose classes
    differ is a wrong class (the student found the object but named it wrongly)."""
    overlap = box_iou(student.xyxy, teacher.xyxy) if len(student) and len(teacher) else np.zeros((len(student), len(teacher)))
    pairs = sorted(((float(overlap[s, t]), s, t) for s in range(len(student)) for t in range(len(teacher))
                    if overlap[s, t] >= iou), reverse=True)
    used_s, used_t = set(), set()
    matched: list[tuple[int, int]] = []
    wrong: list[tuple[int, int]] = []
    for _, s, t in pairs:
        if s in used_s or t in used_t:
            continue
        used_s.add(s)
        used_t.add(t)
        (matched if student.class_name[s] == teacher.class_name[t] else wrong).append((s, t))
    return Comparison(tuple(sorted(matched)), tuple(sorted(wrong)),
                      tuple(t for t in range(len(teacher)) if t not in used_t),
                      tuple(s for s in range(len(student)) if s not in used_s))


@dataclasses.dataclass
class StudentStats:
    """Counters since the filter was (re)configured. Precision and recall of the student are against the teacher on
    the frames the teacher checked (`*_sampled`: on the randomly sampled ones only, the unbiased estimate)."""

    frames: int = 0
    teacher_calls: int = 0
    teacher_calls_saved: int = 0
    repeats_skipped: int = 0
    teacher_reasons: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(("unsure", "novel",
                                                                                                "sampled"), 0))
    disagreements: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(("missed", "extra",
                                                                                              "wrong_class"), 0))
    frames_disagreed: int = 0
    agreements_kept: int = 0
    teacher_unsettled: int = 0
    student_errors: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(("tp", "fp", "fn", "tp_sampled",
                                                                                       "fp_sampled", "fn_sampled"), 0))

    def record(self, comparison: Comparison, sampled: bool) -> None:
        tp = len(comparison.matched)
        fp = len(comparison.extra) + len(comparison.wrong_class)
        fn = len(comparison.missed) + len(comparison.wrong_class)
        for suffix in ("", "_sampled") if sampled else ("",):
            self.counts["tp" + suffix] += tp
            self.counts["fp" + suffix] += fp
            self.counts["fn" + suffix] += fn

    def as_dict(self) -> dict[str, Any]:
        c = self.counts

        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        return dataclasses.asdict(self) | {
            "teacher_calls_per_frame": ratio(self.teacher_calls, self.frames),
            "student_precision": ratio(c["tp"], c["tp"] + c["fp"]), "student_recall": ratio(c["tp"], c["tp"] + c["fn"]),
            "student_precision_sampled": ratio(c["tp_sampled"], c["tp_sampled"] + c["fp_sampled"]),
            "student_recall_sampled": ratio(c["tp_sampled"], c["tp_sampled"] + c["fn_sampled"]),
        }


@dataclasses.dataclass(frozen=True)
class StudentDecision:
    """One frame's outcome. `keep` says whether it is training data; `teacher` is the filter's decision where the teacher
    ran; `provenance` is the frame-level record a kept frame carries (why the teacher ran, what the student said, the kinds
    of disagreement or `agreement`)."""

    keep: bool
    student: Detections
    teacher: Decision | None
    reasons: tuple[Reason, ...]
    comparison: Comparison | None

    @property
    def detections(self) -> Detections:
        """The labels of a kept frame: the teacher's verified boxes (possibly none: the student's extra boxes there are
        background)."""
        return self.teacher.detections if self.teacher is not None else Detections.empty()

    @property
    def provenance(self) -> dict[str, Any]:
        kinds: tuple[str, ...] = self.comparison.kinds if self.comparison else ()
        return {"teacher_reasons": list(self.reasons), "kind": list(kinds) or ["agreement"],
                "student_boxes": [[*(round(float(v), 2) for v in xyxy), name, round(score, 4)]
                                  for xyxy, score, name in self.student]}


def _same(a: Detections, b: Detections, iou: float = 0.9) -> bool:
    """The same classes at the same places (each box of `a` overlapping one of `b` of its class at `iou`)."""
    if len(a) != len(b) or sorted(a.class_name.tolist()) != sorted(b.class_name.tolist()):
        return False
    if not len(a):
        return True
    overlap = box_iou(a.xyxy, b.xyxy) * (a.class_name[:, None] == b.class_name[None, :])
    return bool((overlap.max(axis=1) >= iou).all())


def teacher_settled(decision: Decision) -> bool:
    """Whether the teacher resolved every box a rule asked about: none left unsure or over `max_crops_per_frame`
    (the filter's ignore regions)."""
    return decision.outcome in ("kept", "nothing_verified") and not len(decision.ignore)


def signature(dets: Detections) -> tuple[tuple[str, int], ...]:
    """The classes a frame shows and how many of each: what "seen lately" compares."""
    return tuple(sorted(collections.Counter(dets.class_name.tolist()).items()))


class StudentPolicy:
    """The student in front of a teacher filter, for one stream of frames (novelty is per stream).

    A frame where the teacher did not resolve every box it was asked about (`teacher_settled`) is never kept, because an
    unresolved object would become background.
    """

    def __init__(self, config: FilterConfig, student: Callable[[Frame], Awaitable[Detections]],
                 teacher: AutoLabelFilter, settled: Callable[[Decision], bool] = teacher_settled) -> None:
        self.config, self.student, self.teacher, self.settled = config, student, teacher, settled
        self.stats = StudentStats()
        self._recent: collections.deque[tuple[tuple[str, int], ...]] = collections.deque(maxlen=config.novelty_window)
        self._random = random.Random(config.seed)
        # the last frame the teacher checked: its thumbnail and what the student said about it
        self._checked: tuple[npt.NDArray[np.float32], Detections] | None = None

    def _repeat(self, thumb: npt.NDArray[np.float32], student: Detections) -> bool:
        if self._checked is None:
            return False
        before, said = self._checked
        return float(np.abs(thumb - before).mean()) < STILL and _same(student, said)

    def _why(self, thumb: npt.NDArray[np.float32], student: Detections) -> tuple[Reason, ...]:
        low, high = self.config.student_unsure
        reasons: list[Reason] = []
        if any(low <= s < high for s in student.confidence.tolist()):
            if self._repeat(thumb, student):
                self.stats.repeats_skipped += 1
            else:
                reasons.append("unsure")
        shape = signature(student)
        if self.config.novelty_window and shape not in self._recent:
            reasons.append("novel")
        self._recent.append(shape)
        if not reasons and self._random.random() < self.config.teacher_sample_rate:
            reasons.append("sampled")
        return tuple(reasons)

    async def examine(self, frame: Frame, *, gate: bool = True) -> StudentDecision:
        self.stats.frames += 1
        reasons: tuple[Reason, ...]
        thumb = await asyncio.to_thread(thumbnail, frame.image)
        try:
            student = (await self.student(frame)).clip(*frame.image.size)
        except Exception:  # noqa: BLE001 - a failing student costs savings, never labels: ask the teacher
            self.stats.student_errors += 1
            student, reasons = Detections.empty(), ("unsure",)
        else:
            reasons = self._why(thumb, student)
        if not reasons:
            self.stats.teacher_calls_saved += 1
            return StudentDecision(False, student, None, (), None)
        self.stats.teacher_calls += 1
        self._checked = thumb, student
        for reason in reasons:
            self.stats.teacher_reasons[reason] += 1
        teacher = await self.teacher.examine(frame, gate=gate)
        if teacher.outcome in ("duplicate", "detector_failed", "verifier_failed") or not self.settled(teacher):
            self.stats.teacher_unsettled += teacher.outcome != "duplicate"
            return StudentDecision(False, student, teacher, reasons, None)
        comparison = compare(student, teacher.detections)
        sampled = reasons == ("sampled",)
        self.stats.record(comparison, sampled)
        for kind in comparison.kinds:
            self.stats.disagreements[kind] += 1
        if comparison.kinds:
            self.stats.frames_disagreed += 1
        elif sampled:
            self.stats.agreements_kept += 1
        return StudentDecision(bool(comparison.kinds) or sampled, student, teacher, reasons, comparison)
