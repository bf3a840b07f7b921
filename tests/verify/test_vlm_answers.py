"""Free-text replies seen from real VLMs, and the unsure band."""

from __future__ import annotations

import math

import pytest

from labelsieve.verify.answers import Verdict, p_yes_from_logprobs, parse_answer


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes.", ("yes", None)),
    ("yes", ("yes", None)),
    (" No", ("no", None)),
    ("no", ("no", None)),
    ("No, the person is not wearing glasses.", ("no", None)),
    ("Yes, they are wearing glasses on their face.", ("yes", None)),
    ("**Yes**", ("yes", None)),
    ("**No.**\n\nThe glasses are on the table.", ("no", None)),
    ("YES", ("yes", None)),
    ('{"answer": "yes", "confidence": 0.9}', ("yes", 0.9)),
    ('```json\n{"answer": "No", "confidence": 0.7}\n```', ("no", 0.7)),
    ('{"answer": true}', ("yes", None)),
    ('{"answer": "maybe", "confidence": 0.99}', ("unsure", None)),
    ('{"answer": "yes", "confidence": 7}', ("yes", None)),  # out-of-range confidence is ignored, not trusted
    ("I cannot tell from this image.", ("unsure", None)),
    ("I can't tell; the face is blurry.", ("unsure", None)),
    ("It is unclear whether...", ("unsure", None)),
    ("The answer is no.", ("no", None)),
    ("Answer: yes", ("yes", None)),
    ("There is no person in the image.", ("unsure", None)),  # 'no' inside a sentence is not an answer
    ("Not sure, but yes", ("unsure", None)),
    ("", ("unsure", None)),
    ("Maybe", ("unsure", None)),
    ('{"answer": "yes"', ("yes", None)),  # JSON cut short by max_tokens
])
def test_parse_answer(text: str, expected: tuple[str, float | None]) -> None:
    assert parse_answer(text) == expected


def test_p_yes_from_logprobs_sums_variants() -> None:
    top = [(" Yes", math.log(0.5)), ("yes", math.log(0.2)), ("No", math.log(0.1)), ("The", math.log(0.2))]
    assert p_yes_from_logprobs(top) == pytest.approx(0.7 / 0.8)
    assert p_yes_from_logprobs([("The", 0.0)]) is None


@pytest.mark.parametrize(("p_yes", "answer", "confidence"), [
    (0.9, "yes", 0.9), (0.6, "yes", 0.6), (0.59, "unsure", 0.59), (0.5, "unsure", 0.5), (0.41, "unsure", 0.59),
    (0.4, "no", 0.6), (0.05, "no", 0.95),
])
def test_unsure_band(p_yes: float, answer: str, confidence: float) -> None:
    verdict = Verdict.from_p_yes(p_yes, yes_threshold=0.6, no_threshold=0.4)
    assert (verdict.answer, verdict.confidence) == (answer, pytest.approx(confidence))
