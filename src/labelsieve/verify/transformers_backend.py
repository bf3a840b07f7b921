"""A local VLM answering yes/no with ONE forward pass: compare the next-token logits of "yes" and "no" variants.

`generate()` would cost a forward per token and still leave us parsing text; the logits give P(yes | yes or no) directly.
Loading and inference run on one dedicated worker thread (loading first), so the event loop never blocks and requests
queue behind the weights instead of failing while they load. torch and transformers are imported there, lazily.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from PIL import Image

from labelsieve import weights
from labelsieve.errors import ModelError
from labelsieve.verify.answers import Verdict
from labelsieve.verify.config import VerifierConfig

__all__ = ["TransformersBackend"]

log = logging.getLogger(__name__)

_YES = ("yes", "Yes", " yes", " Yes", "YES")
_NO = ("no", "No", " no", " No", "NO")
_INSTRUCTION = "Answer with one word: yes or no."


class TransformersBackend:
    def __init__(self, config: VerifierConfig, resource: str = "") -> None:
        self.config, self.resource = config, resource
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vlm-verifier")
        self._loaded: concurrent.futures.Future[None] | None = None
        self.model: Any = None
        self.processor: Any = None

    def start(self) -> None:
        """Begin loading in the background (idempotent), so the first request does not pay for it."""
        self._loading()

    def _loading(self) -> concurrent.futures.Future[None]:
        if self._loaded is None:
            self._loaded = self._worker.submit(self._load)
            self._loaded.add_done_callback(self._log_failure)
        return self._loaded

    def _log_failure(self, loaded: concurrent.futures.Future[None]) -> None:
        if not loaded.cancelled() and (exc := loaded.exception()) is not None:
            log.error("loading the verifier model failed: %s", exc)

    async def answer(self, image: Image.Image, question: str) -> Verdict:
        await asyncio.wrap_future(self._loading())  # a load failure reaches every caller, and is never retried blindly
        return await asyncio.wrap_future(self._worker.submit(self._infer, image, question))

    def _load(self) -> None:
        cfg, who = self.config, self.resource or "verifier"
        with weights.loading():
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            source, kwargs = weights.source(cfg.model, cfg.revision)
            try:
                self.processor = AutoProcessor.from_pretrained(source, **kwargs)
                self.model = AutoModelForImageTextToText.from_pretrained(
                    source, dtype="auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype), **kwargs)
            except OSError as exc:  # huggingface_hub's offline / not-found errors are OSErrors
                raise weights.not_found(who, cfg.model, exc) from exc
            except (ValueError, KeyError) as exc:
                raise ModelError(f"{who}: {cfg.model!r} is not a supported VLM (SmolVLM/Idefics3, LLaVA, PaliGemma): "
                                 f"{exc}") from exc
        if self.model.config.is_encoder_decoder:
            raise ModelError(f"{who}: {cfg.model!r} is an encoder-decoder model (e.g. Florence-2); the verifier needs a "
                             "decoder-only VLM such as SmolVLM, LLaVA or PaliGemma")
        self.model.eval().to(cfg.device)
        self._set_image_size()
        tok = self.processor.tokenizer
        self._yes, self._no = self._ids(tok, _YES), self._ids(tok, _NO)
        log.info("%s: loaded %s (%s) on %s", who, cfg.model, self.model.config.model_type, cfg.device)

    def _ids(self, tokenizer: Any, variants: tuple[str, ...]) -> list[int]:
        ids = sorted({ids[0] for v in variants if len(ids := tokenizer.encode(v, add_special_tokens=False)) == 1})
        if not ids:
            raise ModelError(f"{self.resource or 'verifier'}: the tokenizer of {self.config.model!r} has no single token "
                             f"for any of {variants}; it cannot be used for yes/no verification")
        return ids

    def _set_image_size(self) -> None:
        """SmolVLM/Idefics3: encode one tile of `image_size` px and no splitting (splitting costs ~14x on CPU)."""
        size, ip = self.config.image_size, getattr(self.processor, "image_processor", None)
        if not size or not hasattr(self.processor, "image_seq_len") or not hasattr(ip, "max_image_size"):
            return
        vision = self.model.config.vision_config
        step = vision.patch_size * self.model.config.scale_factor
        if size % step:
            raise ModelError(f"{self.resource or 'verifier'}: 'image_size' {size} must be a multiple of {step} for "
                             f"{self.config.model!r} (patch {vision.patch_size} x pixel shuffle {self.model.config.scale_factor})")
        ip.size = ip.max_image_size = {"longest_edge": size}
        ip.do_image_splitting = False
        self.processor.image_seq_len = (size // vision.patch_size) ** 2 // self.model.config.scale_factor**2

    def _prompt(self, question: str) -> str:
        text = f"{question} {_INSTRUCTION}"
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        if self.model.config.model_type == "paligemma":
            return f"<image>answer en {question}"  # PaliGemma's own task prefix; it is trained to answer tersely
        return f"USER: <image>\n{text}\nASSISTANT:"

    def _infer(self, image: Image.Image, question: str) -> Verdict:
        import torch

        inputs = self.processor(images=[image], text=self._prompt(question), return_tensors="pt")
        inputs.pop("labels", None)
        inputs = {k: v.to(self.model.device, dtype=self.model.dtype) if v.is_floating_point() else v.to(self.model.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        p_yes = torch.sigmoid(torch.logsumexp(logp[self._yes], 0) - torch.logsumexp(logp[self._no], 0)).item()
        return Verdict.from_p_yes(p_yes, self.config.yes_threshold, self.config.no_threshold)

    async def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
