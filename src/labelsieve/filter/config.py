"""Attributes of the auto-label filter, shared by the Viam module (`validate_config`, `new`) and Python callers."""

from __future__ import annotations

from dataclasses import dataclass

from labelsieve.attributes import Attributes, FieldProblem

__all__ = ["FilterConfig", "Rule"]


@dataclass(frozen=True)
class Rule(Attributes):
    """Ask `question` about every box the proposer labels `detect`; "yes" relabels it `label`.

    A verified "no" becomes `negative_label` when one is set (a verified negative is training data, not background) and is
    dropped otherwise. "unsure" is never a label. `padding` is the fraction of the box's width and height kept around it in
    the crop, so the verifier sees a little context (glasses at the edge of a tight face box).
    """

    detect: str
    question: str
    label: str
    negative_label: str | None = None
    min_confidence: float = 0.3
    padding: float = 0.1

    def label_for(self, answer: str) -> str | None:
        """What a box becomes under this rule when the verifier's answer (as the filter reads it) is `answer`: the one
        relabeling, used by the filter and by eval's threshold sweep. None drops the box."""
        return {"yes": self.label, "no": self.negative_label}.get(answer)

    def check(self) -> None:
        for name in ("detect", "question", "label", "negative_label"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise FieldProblem(name, "must not be empty")
        if self.negative_label == self.label:
            raise FieldProblem("negative_label", f"is the same as 'label' ({self.label!r})",
                               "a verified 'no' needs its own name, or leave negative_label out to drop it")
        if self.label == "unsure" or self.negative_label == "unsure":
            raise FieldProblem("label" if self.label == "unsure" else "negative_label", "'unsure' is never a label")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise FieldProblem("min_confidence", f"must be between 0 and 1, got {self.min_confidence}")
        if not 0.0 <= self.padding <= 1.0:
            raise FieldProblem("padding", f"must be between 0 and 1 (a fraction of the box), got {self.padding}")


@dataclass(frozen=True)
class FilterConfig(Attributes):
    """Keep a frame only where a proposer and a verifier agree, and label it with the verified boxes.

    `duplicate_threshold` gates frames before any model runs: a frame whose 32x32 grayscale thumbnail differs from the last
    frame examined by less than this mean absolute difference (0 to 1, in units of full brightness) is skipped. 0.01 is
    about 2.5 grey levels on average: sensor noise on a still scene stays well below it, while a person walking into a
    VGA frame (5% of the pixels changing by ~100 levels) lands at ~0.02. 0 turns the gate off.

    `detector_timeout` bounds one proposal, `verifier_timeout` the verification of all of one frame's crops (they run
    concurrently, at most `max_concurrency` at once).
    """

    detector: str
    verifier: str
    rules: tuple[Rule, ...]
    camera_name: str | None = None
    max_crops_per_frame: int = 8
    max_concurrency: int = 4
    duplicate_threshold: float = 0.01
    detector_timeout: float = 30.0
    verifier_timeout: float = 30.0
    #: Active learning (`labelsieve.filter.student`): the deployed fast detector; the teacher then runs only where the
    #: student scores a box in [low, high), shows classes or counts unseen on the last `novelty_window` frames, or on a
    #: `teacher_sample_rate` share of the rest (`seed` makes that sample repeatable).
    student: str | None = None
    student_unsure: tuple[float, ...] = (0.3, 0.7)
    teacher_sample_rate: float = 0.05
    novelty_window: int = 50
    seed: int = 0

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label the filter can give, in rule order: its class ids, stable while the rules are."""
        return tuple(dict.fromkeys(n for r in self.rules for n in (r.label, r.negative_label) if n is not None))

    @property
    def detect_classes(self) -> tuple[str, ...]:
        """The proposer classes the rules ask about, each once."""
        return tuple(dict.fromkeys(r.detect for r in self.rules))

    def check(self) -> None:
        for name in ("detector", "verifier"):
            if not getattr(self, name):
                raise FieldProblem(name, "must name a vision service")
        if not self.rules:
            raise FieldProblem("rules", "must hold at least one rule",
                               'e.g. [{"detect": "person", "question": "Is this person wearing glasses?", "label": "glasses"}]')
        for name in ("max_crops_per_frame", "max_concurrency"):
            if getattr(self, name) < 1:
                raise FieldProblem(name, f"must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.duplicate_threshold <= 1.0:
            raise FieldProblem("duplicate_threshold", f"must be between 0 and 1, got {self.duplicate_threshold}",
                               "0 turns the near-duplicate gate off")
        for name in ("detector_timeout", "verifier_timeout"):
            if getattr(self, name) <= 0:
                raise FieldProblem(name, f"must be more than 0 seconds, got {getattr(self, name)}")
        if self.student is not None and not self.student.strip():
            raise FieldProblem("student", "must name a vision service (usually the fast detector)")
        band = self.student_unsure
        if len(band) != 2 or not 0.0 <= band[0] <= band[1] <= 1.0:
            raise FieldProblem("student_unsure", f"must be [low, high] with 0 <= low <= high <= 1, got {list(band)}",
                               "e.g. [0.3, 0.7]")
        if not 0.0 <= self.teacher_sample_rate <= 1.0:
            raise FieldProblem("teacher_sample_rate", f"must be between 0 and 1, got {self.teacher_sample_rate}",
                               "0.05 checks one in twenty of the frames the student is sure about")
        if self.novelty_window < 0:
            raise FieldProblem("novelty_window", f"must be 0 (off) or more frames, got {self.novelty_window}")
