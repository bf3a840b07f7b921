"""A local VLM answering yes/no with ONE forward pass: compare the next-token logits of "yes" and "no" variants.

`generate()` would cost a forward per token and still leave us parsing text; the logits give P(yes | yes or no) directly.
The loaded model lives in a `ModelSlot` (loaded in the background, kept across a reconfigure, swapped on a `model` edit);
inference runs on a worker thread, one forward at a time per loaded model, so the event loop never blocks and requests
queue behind the weights instead of failing while they load. torch and transformers are imported there, lazily.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from PIL import Image

from labelsieve import weights
from labelsieve.errors import ModelError
from labelsieve.models import ModelKey, ModelSlot, resolve_device, resolve_dtype
from labelsieve.verify.answers import Verdict
from labelsieve.verify.config import VerifierConfig

__all__ = ["LoadedVlm", "TransformersBackend"]

log = logging.getLogger(__name__)

_YES = ("yes", "Yes", " yes", " Yes", "YES")
_NO = ("no", "No", " no", " No", "NO")
_INSTRUCTION = "Answer with one word: yes or no."


class LoadedVlm:
    """A loaded VLM and processor with the token ids of "yes" and "no"; what the slot holds."""

    def __init__(self, config: VerifierConfig, who: str) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source, kwargs = weights.source(config.model, config.revision)
        device = resolve_device(config.device, who)
        try:
            self.processor = AutoProcessor.from_pretrained(source, **kwargs)
            self.model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=resolve_dtype(config.dtype, device), **kwargs)
        except OSError as exc:  # huggingface_hub's offline / not-found errors are OSErrors
            raise weights.not_found(who, config.model, exc) from exc
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{who}: {config.model!r} is not a supported VLM (SmolVLM/Idefics3, LLaVA, PaliGemma): "
                             f"{exc}") from exc
        if self.model.config.is_encoder_decoder:
            raise ModelError(f"{who}: {config.model!r} is an encoder-decoder model (e.g. Florence-2); the verifier needs "
                             "a decoder-only VLM such as SmolVLM, LLaVA or PaliGemma")
        self.model.eval().to(device)
        self.lock = threading.Lock()
        self._set_image_size(config, who)
        tok = self.processor.tokenizer
        self.yes, self.no = self._ids(tok, _YES, config, who), self._ids(tok, _NO, config, who)
        log.info("%s: loaded %s (%s) on %s", who, config.model, self.model.config.model_type, device)

    def _ids(self, tokenizer: Any, variants: tuple[str, ...], config: VerifierConfig, who: str) -> list[int]:
        ids = sorted({ids[0] for v in variants if len(ids := tokenizer.encode(v, add_special_tokens=False)) == 1})
        if not ids:
            raise ModelError(f"{who}: the tokenizer of {config.model!r} has no single token for any of {variants}; "
                             "it cannot be used for yes/no verification")
        return ids

    def _set_image_size(self, config: VerifierConfig, who: str) -> None:
        """SmolVLM/Idefics3: encode one tile of `imgsz` px and no splitting (splitting costs ~14x on CPU)."""
        size, ip = config.imgsz, getattr(self.processor, "image_processor", None)
        if ip is None:
            return
        if not size or not hasattr(self.processor, "image_seq_len") or not hasattr(ip, "max_image_size"):
            return
        vision = self.model.config.vision_config
        step = vision.patch_size * self.model.config.scale_factor
        if size % step:
            raise ModelError(f"{who}: 'imgsz' {size} must be a multiple of {step} for {config.model!r} "
                             f"(patch {vision.patch_size} x pixel shuffle {self.model.config.scale_factor})")
        ip.size = ip.max_image_size = {"longest_edge": size}
        ip.do_image_splitting = False
        self.processor.image_seq_len = (size // vision.patch_size) ** 2 // self.model.config.scale_factor**2

    def _prompt(self, question: str) -> str:
        text = f"{question} {_INSTRUCTION}"
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return str(self.processor.apply_chat_template(messages, add_generation_prompt=True))
        if self.model.config.model_type == "paligemma":
            return f"<image>answer en {question}"  # PaliGemma's own task prefix; it is trained to answer tersely
        return f"USER: <image>\n{text}\nASSISTANT:"

    def p_yes(self, image: Image.Image, question: str) -> float:
        """P(yes | yes or no) for the next token. Blocking: call from a worker thread."""
        import torch

        inputs = self.processor(images=[image], text=self._prompt(question), return_tensors="pt")
        inputs.pop("labels", None)
        inputs = {k: v.to(self.model.device, dtype=self.model.dtype) if v.is_floating_point() else v.to(self.model.device)
                  for k, v in inputs.items()}
        with self.lock, torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        return float(torch.sigmoid(torch.logsumexp(logp[self.yes], 0) - torch.logsumexp(logp[self.no], 0)).item())


class TransformersBackend:
    def __init__(self, config: VerifierConfig, resource: str = "", slot: ModelSlot[LoadedVlm] | None = None) -> None:
        self.config, self.resource = config, resource
        self.slot: ModelSlot[LoadedVlm] = slot or ModelSlot(resource or "verifier")

    @property
    def key(self) -> ModelKey:
        cfg = self.config
        return ModelKey(cfg.model, cfg.revision or None, cfg.device, cfg.dtype,
                        extra=(("imgsz", cfg.imgsz),), kind="vlm-verifier")

    def start(self) -> Future[LoadedVlm]:
        """Begin loading in the background (instant when the slot or the cache has this model already)."""
        return self.slot.load(self.key, lambda: LoadedVlm(self.config, self.resource or "verifier"))

    async def answer(self, image: Image.Image, question: str) -> Verdict:
        if self.slot.key is None:
            self.start()
        loaded = await self.slot.get()  # a load failure reaches every caller, and is never retried blindly
        p_yes = await asyncio.to_thread(loaded.p_yes, image, question)
        return Verdict.from_p_yes(p_yes, self.config.yes_threshold, self.config.no_threshold)

    async def close(self) -> None:
        self.slot.release()
