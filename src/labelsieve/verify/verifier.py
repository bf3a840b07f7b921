"""The verifier facade: crops + questions in, verdicts out, with a cache so a repeated crop costs no model call.

Fail closed: a verdict is only ever what a backend returned; a failed call raises (after the batch settles, so the answers
that did arrive are cached) and is never cached, never defaulted to "yes".
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from PIL import Image

from labelsieve.errors import InputError, LabelsieveError
from labelsieve.models import ModelSlot
from labelsieve.verify.answers import Verdict
from labelsieve.verify.config import VerifierConfig

__all__ = ["Backend", "Verifier", "make_backend"]


class Backend(Protocol):
    def start(self) -> object:
        """Begin any slow preparation (loading weights) in the background."""

    async def answer(self, image: Image.Image, question: str) -> Verdict: ...

    async def close(self) -> None: ...


def make_backend(config: VerifierConfig, resource: str = "", slot: ModelSlot[Any] | None = None) -> Backend:
    """`slot` holds a local model (a Viam shell passes its resource's process-wide one); the openai backend has none."""
    if config.backend == "openai":
        from labelsieve.verify.openai_backend import OpenAIBackend

        return OpenAIBackend(config, resource)
    from labelsieve.verify.transformers_backend import TransformersBackend  # torch only when asked for

    return TransformersBackend(config, resource, slot)


def _key(image: Image.Image, question: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest(), question


class Verifier:
    def __init__(self, config: VerifierConfig, resource: str = "", backend: Backend | None = None,
                 slot: ModelSlot[Any] | None = None) -> None:
        self.config, self.resource = config, resource
        self.backend = backend or make_backend(config, resource, slot)
        self._cache: collections.OrderedDict[tuple[str, str], Verdict] = collections.OrderedDict()
        self._limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.backend_calls = self.cache_hits = 0

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any] | None = None, resource: str = "") -> Verifier:
        return cls(VerifierConfig.parse(resource, attributes), resource)

    def start(self) -> None:
        self.backend.start()

    def questions_for(self, count: int, questions: Sequence[str] | str | None) -> list[str]:
        if questions is None or isinstance(questions, str):
            question = questions or self.config.default_question
            if not question:
                raise InputError(f"{self.resource or 'verifier'}: no question given; pass one (extra={{\"question\": ...}}) "
                                 "or set attribute 'default_question'")
            return [question] * count
        if len(questions) != count or not all(isinstance(q, str) and q for q in questions):
            raise InputError(f"{self.resource or 'verifier'}: expected {count} non-empty questions, one per crop, "
                             f"got {len(questions)}")
        return list(questions)

    async def verify(self, crops: Sequence[Image.Image], questions: Sequence[str] | str | None = None) -> list[Verdict]:
        """One verdict per crop; identical (crop, question) pairs in a batch or earlier batches cost one backend call."""
        keys = [_key(crop, q) for crop, q in zip(crops, self.questions_for(len(crops), questions), strict=True)]
        todo: dict[tuple[str, str], Image.Image] = {}
        for key, crop in zip(keys, crops):
            if key in self._cache:
                self._cache.move_to_end(key)
                self.cache_hits += 1
            else:
                todo.setdefault(key, crop)
        results = await asyncio.gather(*(self._ask(crop, key[1]) for key, crop in todo.items()), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        fresh = {key: r for key, r in zip(todo, results) if isinstance(r, Verdict)}
        for key, verdict in fresh.items():
            self._remember(key, verdict)
        if errors:
            raise next((e for e in errors if isinstance(e, LabelsieveError)), errors[0])
        return [fresh[key] if key in fresh else self._cache[key] for key in keys]

    def verify_sync(self, crops: Sequence[Image.Image], questions: Sequence[str] | str | None = None) -> list[Verdict]:
        """For scripts and batch jobs without an event loop."""
        return asyncio.run(self.verify(crops, questions))

    async def _ask(self, crop: Image.Image, question: str) -> Verdict:
        loop = asyncio.get_running_loop()
        limit = self._limits.get(loop)
        if limit is None:
            self._limits = {lp: s for lp, s in self._limits.items() if not lp.is_closed()}
            limit = self._limits[loop] = asyncio.Semaphore(self.config.max_concurrency)
        async with limit:
            self.backend_calls += 1
            verdict = await self.backend.answer(crop, question)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"backend returned {type(verdict).__name__}, not a Verdict")
        return verdict

    def _remember(self, key: tuple[str, str], verdict: Verdict) -> None:
        if self.config.cache_size <= 0:
            return
        self._cache[key] = verdict
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    async def close(self) -> None:
        await self.backend.close()
