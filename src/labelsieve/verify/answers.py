"""Turning a VLM's reply into a `Verdict`, failing closed: anything that is not clearly yes or no is "unsure".

Real replies come as "Yes.", "no", "No, the person is...", "**Yes**", "```json {"answer": "yes", "confidence": 0.9}```",
"The answer is no." or "I cannot tell from this image". A reply is read by its *leading* word (models answer first, then
explain), then by JSON, then by an explicit "answer is X"; a word buried in an explanation ("there is no person") is
not an answer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable
from typing import Any, Literal

__all__ = ["Answer", "Verdict", "answer_word", "p_yes_from_logprobs", "parse_answer"]

Answer = Literal["yes", "no", "unsure"]

_YES = frozenset({"yes", "yeah", "yep", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative"})
_UNSURE = re.compile(
    r"\b(unsure|not sure|uncertain|unclear|can(?:not|'t| not) (?:tell|determine|say|see|be sure)|unable to|"
    r"impossible to|don'?t know|hard to (?:say|tell)|ambiguous|insufficient)\b")
_STATED = re.compile(r"\banswer\W{0,5}(?:is\W{0,3})?(yes|no)\b")
_JSON = re.compile(r"\{.*\}", re.DOTALL)
_WORD = re.compile(r"[a-z']+")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One answer. `confidence` is the probability of `answer`; `p_yes` is P(yes | yes or no) when the model gave one."""

    answer: Answer
    confidence: float
    p_yes: float | None = None
    raw: str = ""

    @classmethod
    def from_p_yes(cls, p_yes: float, yes_threshold: float, no_threshold: float, raw: str = "") -> Verdict:
        if p_yes >= yes_threshold:
            return cls("yes", p_yes, p_yes, raw)
        if p_yes <= no_threshold:
            return cls("no", 1.0 - p_yes, p_yes, raw)
        return cls("unsure", max(p_yes, 1.0 - p_yes), p_yes, raw)

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "confidence": self.confidence} | ({} if self.p_yes is None else {"p_yes": self.p_yes})


def answer_word(token: str) -> Answer | None:
    """'yes' / 'no' for a token or word such as ' Yes', '**No', '"yes"'; None otherwise."""
    word = token.strip().strip("*_`\"'.,:;!()[]{} ").lower()
    return "yes" if word in _YES else "no" if word in _NO else None


def _from_json(text: str) -> tuple[Answer, float | None] | None:
    match = _JSON.search(text)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = next((data[k] for k in ("answer", "verdict", "label", "result") if k in data), None)
    answer: Answer | None = (("yes" if value else "no") if isinstance(value, bool)
                             else answer_word(value) if isinstance(value, str) else None)
    if answer is None:
        return ("unsure", None) if value is not None else None
    conf = next((data[k] for k in ("confidence", "probability", "score") if k in data), None)
    if isinstance(conf, (int, float)) and not isinstance(conf, bool) and 0 <= conf <= 1:
        return answer, float(conf)
    return answer, None


def parse_answer(text: str) -> tuple[Answer, float | None]:
    """(answer, confidence of that answer if the reply stated one). Never raises; unknown shapes are "unsure"."""
    if (parsed := _from_json(text)) is not None:
        return parsed
    lowered = text.lower().replace("\u2019", "'")
    words = _WORD.findall(lowered.replace("*", " "))
    if words and (lead := answer_word(words[0])):
        return lead, None
    if _UNSURE.search(lowered):
        return "unsure", None
    if stated := _STATED.search(lowered):
        return stated.group(1), None  # type: ignore[return-value]
    return "unsure", None


def p_yes_from_logprobs(top: Iterable[tuple[str, float]]) -> float | None:
    """P(yes | yes or no) from one position's top log-probabilities; None when neither appears."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top:
        if (word := answer_word(token)) is not None:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None
