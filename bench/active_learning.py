"""Active learning: how many teacher calls the student saves, and how many of the disagreements it still catches.

    .venv/bin/python bench/active_learning.py [--frames 1200] [--seed 0]

A clip the student mostly knows, with stand-in stages of known answers: scenes of 5 to 40 frames, each with 0 to 3
people, each with or without glasses. The teacher is an oracle (its proposer finds every person; its verifier reads the
truth painted into the crop). The student is the oracle with a calibrated model's errors: each object is missed, named
wrongly or joined by a ghost box with probability `--error` (per scene, so a mistake persists for the scene, as a model's
does), and `--calibration` of its mistakes score inside the unsure band while its correct boxes score above it, except
`--doubt` of them. Both runs see the same frames:

- full: the teacher on every frame, compared with the student: the frames where they disagree;
- policy: `StudentPolicy` (unsure band, novelty over 50 frames, `--sample` of the rest).

It prints teacher calls per frame for both, the share of the full run's disagreeing frames the policy caught, and the
share of distinct mistakes caught (a scene's disagreement, found on at least one of its frames: one labeled example of a
mistake is what training needs, and a scene's later frames repeat it). Goal: <= 0.2 teacher calls a frame while catching
>= 0.9 of the disagreements (per distinct mistake; the per-frame share is printed beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from labelsieve.detections import Detections
from labelsieve.filter import AutoLabelFilter, FilterConfig, Frame
from labelsieve.filter.student import StudentPolicy, compare
from labelsieve.verify import Verdict

RULE = {"detect": "person", "question": "Glasses?", "label": "glasses", "negative_label": "no_glasses"}
SIZE = (160, 90)


@dataclass
class Scene:
    truth: list[tuple[tuple[float, float, float, float], str]]
    student: list[tuple[tuple[float, float, float, float], str, float]]
    shade: int


def scenes(n_frames: int, error: float, calibration: float, doubt: float, rng: random.Random) -> list[Scene]:
    out: list[Scene] = []
    while sum(1 for _ in out) < n_frames:
        people = rng.randint(0, 3)
        truth = [((5 + 50 * j, 10.0, 45 + 50 * j, 80.0), rng.choice(("glasses", "no_glasses"))) for j in range(people)]

        def score(wrong: bool) -> float:
            unsure = rng.random() < (calibration if wrong else doubt)
            return rng.uniform(0.3, 0.69) if unsure else rng.uniform(0.72, 0.98)

        student = []
        for box, label in truth:
            kind = rng.choices(("right", "missed", "wrong_class"), (1 - error, error / 2, error / 2))[0]
            if kind == "missed":
                if rng.random() < calibration:  # seen, but under the threshold a confident model would report
                    student.append((box, label, rng.uniform(0.3, 0.45)))
                continue
            other = "no_glasses" if label == "glasses" else "glasses"
            student.append((box, label if kind == "right" else other, score(kind != "right")))
        if rng.random() < error:
            student.append(((5 + 50 * people, 10.0, 45 + 50 * people, 80.0), "glasses", score(True)))
        out += [Scene(truth, student, rng.randrange(200))] * rng.randint(5, 40)
    return out[:n_frames]


def picture(scene: Scene, index: int, rng: np.random.Generator) -> Image.Image:
    """A still scene: the same picture up to sensor noise (a grey level or two), on a background of its own."""
    image = Image.new("RGB", SIZE, (scene.shade, 40, 40))
    for (x0, y0, x1, y1), label in scene.truth:
        image.paste((0, 255, 0) if label == "glasses" else (0, 0, 255), (int(x0), int(y0), int(x1), int(y1)))
    noisy = np.asarray(image, np.int16) + rng.integers(-2, 3, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def as_dets(rows: Sequence[tuple[tuple[float, float, float, float], str, float]]) -> Detections:
    return Detections(np.array([r[0] for r in rows], np.float32).reshape(-1, 4), np.array([r[2] for r in rows]),
                      np.array([r[1] for r in rows]))


async def run(frames: list[Frame], clip: list[Scene], sample: float, seed: int) -> dict[str, float]:
    calls = {"teacher": 0}
    index = {id(frame): i for i, frame in enumerate(frames)}  # frames of equal pixels are still different frames

    async def propose(frame: Frame) -> Detections:
        calls["teacher"] += 1
        truth = clip[index[id(frame)]].truth
        return as_dets([(box, "person", 0.9) for box, _ in truth])

    async def verify(crops: Sequence[Image.Image], questions: Sequence[str]) -> list[Verdict]:
        return [Verdict("yes" if c.getpixel((c.width // 2, c.height // 2))[1] > 128 else "no", 1.0) for c in crops]

    async def student(frame: Frame) -> Detections:
        return as_dets(clip[index[id(frame)]].student)

    config = FilterConfig.parse("labeler", {"detector": "d", "verifier": "v", "rules": [RULE], "duplicate_threshold": 0,
                                            "student": "fast", "teacher_sample_rate": sample, "seed": seed})
    full = AutoLabelFilter(config, propose, verify)
    disagreeing = set()
    for i, frame in enumerate(frames):
        decision = await full.examine(frame, gate=False)
        if compare(as_dets(clip[i].student), decision.detections).kinds:
            disagreeing.add(i)
    full_calls, calls["teacher"] = calls["teacher"], 0
    policy = StudentPolicy(config, student, AutoLabelFilter(config, propose, verify))
    caught = {i for i, frame in enumerate(frames)
              if (d := await policy.examine(frame, gate=False)).comparison is not None and d.comparison.kinds}
    mistakes = {id(clip[i]) for i in disagreeing}  # a mistake persists through its scene: one to learn from
    return {"frames": len(frames), "full_calls": full_calls, "policy_calls": calls["teacher"],
            "disagreeing": len(disagreeing), "caught": len(caught & disagreeing), "mistakes": len(mistakes),
            "mistakes_caught": len({id(clip[i]) for i in caught} & mistakes), "stats": policy.stats.as_dict()}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--error", type=float, default=0.05, help="per object and scene: missed, wrong class, or a ghost")
    parser.add_argument("--calibration", type=float, default=0.9, help="share of the student's mistakes scored unsure")
    parser.add_argument("--doubt", type=float, default=0.04, help="share of its correct boxes scored unsure")
    parser.add_argument("--sample", type=float, default=0.05, help="teacher_sample_rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clip = scenes(args.frames, args.error, args.calibration, args.doubt, random.Random(args.seed))
    noise = np.random.default_rng(args.seed)
    frames = [Frame(picture(scene, i, noise)) for i, scene in enumerate(clip)]
    r = asyncio.run(run(frames, clip, args.sample, args.seed))
    stats = r["stats"]
    print(f"clip: {r['frames']} frames, {len({id(s) for s in clip})} scenes; student error {args.error} per object and "
          f"scene, {args.calibration:.0%} of its mistakes and {args.doubt:.0%} of its right boxes scored unsure")
    print(f"{'run':<34}{'teacher calls/frame':>20}{'disagreeing frames found':>26}")
    print(f"{'teacher on every frame':<34}{r['full_calls'] / r['frames']:>20.3f}{r['disagreeing']:>26d}")
    print(f"{'student chooses (StudentPolicy)':<34}{r['policy_calls'] / r['frames']:>20.3f}{r['caught']:>26d}")
    share = r["caught"] / r["disagreeing"] if r["disagreeing"] else 1.0
    distinct = r["mistakes_caught"] / r["mistakes"] if r["mistakes"] else 1.0
    print(f"teacher calls a frame: {r['policy_calls'] / r['frames']:.3f} (goal <= 0.2); disagreeing frames caught: "
          f"{share:.3f}; distinct mistakes (a scene's disagreement) caught: {r['mistakes_caught']}/{r['mistakes']} = "
          f"{distinct:.3f} (goal >= 0.9)")
    print(f"why the teacher ran: {stats['teacher_reasons']}; disagreements by kind: {stats['disagreements']}; "
          f"student precision/recall against the teacher: {stats['student_precision']:.3f}/{stats['student_recall']:.3f}")


if __name__ == "__main__":
    main()
