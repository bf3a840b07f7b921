"""Asking any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, `transformers serve`, ...).

Retries are ours, not the client's (`max_retries=0` there), so one loop decides what is retried, honours 429 Retry-After
with a cap, and translates every openai/httpx error at one seam (`_call`) into BackendUnavailable / BackendTimeout.
A timeout is not retried: the configured timeout is the caller's budget for the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from PIL import Image

from labelsieve import images
from labelsieve.errors import BackendTimeout, BackendUnavailable
from labelsieve.retry import backoff
from labelsieve.verify.answers import Verdict, answer_word, p_yes_from_logprobs, parse_answer
from labelsieve.verify.config import VerifierConfig

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)

_INSTRUCTION = "Answer with one word: yes or no."
_MAX_TOKENS = 8  # "**Yes**" fits; a longer reply is an explanation we do not need to pay for
_RAW_CHARS = 200


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)  # HTTP-date form
        return max(0.0, when.timestamp() - time.time()) if when else None


class OpenAIBackend:
    def __init__(self, config: VerifierConfig, resource: str = "",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`sleep` waits between retries; a test passes one that records the delays instead of spending them."""
        self.config, self.resource, self._sleep = config, resource, sleep
        self._logprobs = config.logprobs
        self._clients: dict[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = {}
        config.api_key(resource)  # a missing key is a configuration error now, not on the first frame

    def start(self) -> None:
        """Nothing to load: the endpoint holds the model."""

    def _client(self) -> openai.AsyncOpenAI:
        """One client per event loop: its connection pool belongs to the loop that opened it."""
        loop = asyncio.get_running_loop()
        if (client := self._clients.get(loop)) is None:
            self._clients = {lp: c for lp, c in self._clients.items() if not lp.is_closed()}
            client = self._clients[loop] = openai.AsyncOpenAI(
                base_url=self.config.base_url, api_key=self.config.api_key(self.resource),
                timeout=self.config.timeout, max_retries=0)
        return client

    async def answer(self, image: Image.Image, question: str) -> Verdict:
        content = [{"type": "text", "text": f"{question}\n{_INSTRUCTION}"},
                   {"type": "image_url", "image_url": {"url": images.data_url(image, self.config.imgsz)}}]
        response = await self._call([{"role": "user", "content": content}])
        return self._verdict(response)

    async def _call(self, messages: list[dict[str, Any]]) -> Any:
        cfg, where = self.config, f"{self.resource or 'verifier'}: {self.config.base_url} model {self.config.model!r}"
        attempt = 0
        while True:
            extra = {"logprobs": True, "top_logprobs": 5} if self._logprobs else {}
            try:
                return await self._client().chat.completions.create(  # type: ignore[call-overload]  # plain-dict messages
                    model=cfg.model, messages=messages, temperature=0, max_tokens=_MAX_TOKENS, **extra)
            except openai.APITimeoutError as exc:
                raise BackendTimeout(f"{where} did not answer within {cfg.timeout:g} s (attribute 'timeout')") from exc
            except openai.BadRequestError as exc:
                if not self._logprobs:
                    raise BackendUnavailable(f"{where} rejected the request: {exc.message}") from exc
                log.info("%s rejected logprobs (%s); asking without them from now on", where, exc.message)
                self._logprobs = False
                continue
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise BackendUnavailable(f"{where} refused the API key from ${cfg.api_key_env or '(none)'} "
                                         f"(HTTP {exc.status_code}); check attribute 'api_key_env'") from exc
            except openai.NotFoundError as exc:
                raise BackendUnavailable(f"{where}: not found (HTTP 404); check 'base_url' and 'model'") from exc
            except openai.APIStatusError as exc:
                if exc.status_code != 429 and exc.status_code < 500 and exc.status_code != 408:
                    raise BackendUnavailable(f"{where} answered HTTP {exc.status_code}: {exc.message}") from exc
                failure, wait = f"HTTP {exc.status_code}", _retry_after(exc.response)
                cause: Exception = exc
            except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as exc:
                failure, wait, cause = f"{type(exc).__name__}: {exc}", None, exc  # dropped connection, malformed body
            if attempt >= cfg.max_retries:
                raise BackendUnavailable(f"{where} failed after {attempt + 1} attempt(s): {failure}") from cause
            delay = min(cfg.max_backoff, wait) if wait is not None else backoff(attempt, cfg.max_backoff)
            log.info("%s: %s; retry %d/%d in %.2f s", where, failure, attempt + 1, cfg.max_retries, delay)
            await self._sleep(delay)
            attempt += 1

    def _verdict(self, response: Any) -> Verdict:
        """Text decides yes/no/unsure; log-probabilities (or a stated confidence) only grade it, then the band decides."""
        cfg = self.config
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            return Verdict("unsure", 0.0, None, f"unexpected response shape: {str(response)[:_RAW_CHARS]}")
        raw = text[:_RAW_CHARS]
        answer, stated = parse_answer(text)
        if answer == "unsure":
            return Verdict("unsure", 0.0, None, raw)
        tokens = getattr(getattr(choice, "logprobs", None), "content", None) or []
        at = next((t for t in tokens if answer_word(t.token) == answer), None)
        p_yes = None if at is None else p_yes_from_logprobs(
            [(at.token, at.logprob)] + [(t.token, t.logprob) for t in at.top_logprobs if t.token != at.token])
        if p_yes is None and stated is not None:
            p_yes = stated if answer == "yes" else 1.0 - stated
        if p_yes is None:
            return Verdict(answer, 1.0, None, raw)  # said outright, nothing to grade it by
        verdict = Verdict.from_p_yes(p_yes, cfg.yes_threshold, cfg.no_threshold, raw)
        return verdict if verdict.answer in (answer, "unsure") else Verdict("unsure", 0.0, p_yes, raw)  # text and odds disagree

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.close()
            except RuntimeError:  # its loop is already closed; the sockets went with it
                pass
