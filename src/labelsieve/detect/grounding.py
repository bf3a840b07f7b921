"""`GroundingDetector`: text classes in, `Detections` out, with Grounding DINO or OWLv2 underneath.

torch and transformers are imported inside `load()`, so importing labelsieve stays light and a Viam module answers
`Ready` before the weights arrive. Both backends reduce a frame to the same three arrays (boxes, a per-class score and a
per-class text support); thresholds, NMS, clipping and the `max_detections` cut are then applied once, here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from labelsieve import weights
from labelsieve.detect.config import GroundingDetectorConfig, parse_query
from labelsieve.detections import Detections
from labelsieve.errors import ConfigError, InputError, ModelError
from labelsieve.images import rgb
from labelsieve.models import ModelKey, ModelSlot, resolve_device, resolve_dtype

if TYPE_CHECKING:
    import torch

__all__ = ["SUPPORTED_MODEL_TYPES", "GroundingDetector", "LoadedModel"]

log = logging.getLogger(__name__)

#: Per frame: boxes (Q, 4) xyxy in pixels, score (Q, C) and text support (Q, C), C = number of requested classes.
Raw = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]

_TEXT_CACHE_SIZE = 32


class _Backend(Protocol):
    #: (box_threshold, text_threshold) used for a class the config gives no number for.
    default_thresholds: tuple[float, float]
    default_input_size: int
    device: str

    def encode_text(self, classes: tuple[str, ...]) -> Any: ...

    def infer(self, images: Sequence[Image.Image], text: Any, input_size: int) -> list[Raw]: ...


class LoadedModel:
    """A loaded backend with its run lock and text cache: what a `ModelSlot` holds, shared by every detector object
    (old and new across a reconfigure) that serves with it."""

    def __init__(self, backend: _Backend) -> None:
        self.backend, self.lock = backend, threading.Lock()
        self._text: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def encoded(self, classes: tuple[str, ...]) -> Any:
        """Tokenized (Grounding DINO) or embedded (OWLv2) text for `classes`, computed once per distinct query. Call
        with `lock` held."""
        if classes in self._text:
            self._text.move_to_end(classes)
        else:
            self._text[classes] = self.backend.encode_text(classes)
            if len(self._text) > _TEXT_CACHE_SIZE:
                self._text.popitem(last=False)
        return self._text[classes]


class GroundingDetector:
    """Open-vocabulary box proposer. `start()` (or the first `detect()`) loads the weights. `await detect(...)` runs the
    model in a worker thread, as the verifier's `verify` does, so it serves a filter's `propose` in process;
    `detect_sync(...)` is the same for scripts and benchmarks without an event loop.

    The model lives in a `ModelSlot`: a Viam shell passes the resource's process-wide slot, so a reconfigured object
    serves at once with the model already loaded; Python callers get a private one.
    """

    def __init__(self, config: GroundingDetectorConfig, resource: str = "grounding-detector",
                 slot: ModelSlot[LoadedModel] | None = None) -> None:
        self.config, self.resource = config, resource
        self.slot: ModelSlot[LoadedModel] = slot or ModelSlot(resource)

    @property
    def key(self) -> ModelKey:
        cfg = self.config
        return ModelKey(cfg.model, cfg.revision, cfg.device, cfg.dtype, cfg.quantize, kind="grounding-detector")

    def start(self) -> Future[LoadedModel]:
        """Make the configured model the slot's (loading it in the background unless it is loaded already)."""
        return self.slot.load(self.key, lambda: _load_backend(self.config, self.resource))

    def load(self) -> None:
        """`start()` and wait. Raises `ModelError` / `WeightsNotFoundError` / `ConfigError` (unsupported model)."""
        self.start().result()

    async def close(self) -> None:
        self.slot.release()

    async def detect(self, images: Sequence[Image.Image], query: str | Sequence[str] | None = None) -> list[Detections]:
        """`detect_sync` off the event loop; the first load is awaited here, not on a worker thread."""
        if self.slot.key is None:
            self.start()
        await self.slot.get()
        return await asyncio.to_thread(self.detect_sync, images, query)

    def detect_sync(self, images: Sequence[Image.Image], query: str | Sequence[str] | None = None) -> list[Detections]:
        """One `Detections` per image; `class_name` is always exactly one of the query's (or the config's) classes."""
        if self.slot.key is None:
            self.start()
        model = self.slot.get_sync()
        classes = self._classes(query)
        cfg, backend = self.config, model.backend
        box_t = np.array([cfg.threshold("box_threshold", c, backend.default_thresholds[0]) for c in classes], np.float32)
        text_t = np.array([cfg.threshold("text_threshold", c, backend.default_thresholds[1]) for c in classes], np.float32)
        size = cfg.imgsz or backend.default_input_size
        frames = [rgb(im) for im in images]
        raws: list[Raw] = []
        with model.lock:  # one model call at a time; the text cache is shared state too
            text = model.encoded(classes)
            batch = cfg.batch_size or (4 if backend.device == "cuda" else 1)
            for start in range(0, len(frames), batch):
                try:
                    raws += backend.infer(frames[start : start + batch], text, size)
                except (RuntimeError, ValueError) as exc:
                    raise ModelError(f"{self.resource}: {cfg.model} failed on a batch of frames: {exc}") from exc
        return [self._postprocess(raw, im.size, classes, box_t, text_t) for raw, im in zip(raws, frames)]

    def _classes(self, query: str | Sequence[str] | None) -> tuple[str, ...]:
        if query is None:
            if not self.config.configured_classes:
                raise InputError(f"{self.resource}: no query given and none configured; pass a query such as "
                                 "\"person. dog.\" or set 'classes' or 'default_query' in the attributes")
            return self.config.configured_classes
        try:
            return parse_query(query)
        except ValueError as exc:
            raise InputError(f"{self.resource}: bad query: {exc}") from None

    def _postprocess(self, raw: Raw, size: tuple[int, int], classes: tuple[str, ...],
                     box_t: npt.NDArray[np.float32], text_t: npt.NDArray[np.float32]) -> Detections:
        boxes, score, support = raw
        best = score.argmax(axis=1)
        rows = np.arange(len(best))
        conf = score[rows, best]
        keep = (conf > box_t[best]) & (support[rows, best] > text_t[best])
        names = np.asarray(classes)[best]
        dets = Detections(boxes[keep], conf[keep], names[keep], classes=classes).clip(*size)
        return dets.nms(self.config.nms_iou).sorted()[: self.config.max_detections]


def _load_backend(cfg: GroundingDetectorConfig, resource: str) -> LoadedModel:
    """The slot's factory; it runs under `weights.loading()`."""
    try:
        import torch  # noqa: F401  (imported here so that a missing torch is this clear error)
        from transformers import AutoConfig
    except ImportError as exc:
        raise ModelError(f"{resource}: torch and transformers are needed for the grounding detector: {exc}") from exc
    src, kwargs = weights.source(cfg.model, cfg.revision)
    try:
        model_type = AutoConfig.from_pretrained(src, **kwargs).model_type
    except OSError as exc:
        raise weights.not_found(resource, cfg.model, exc) from exc
    backends: dict[str, Callable[..., _Backend]] = {"grounding-dino": _GroundingDino, "owlv2": _Owlv2}
    if model_type not in backends:
        raise ConfigError(resource, "attributes.model", f"{cfg.model!r} is a {model_type!r} model",
                          f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    device = resolve_device(cfg.device, resource, cpu_only=cfg.quantize == "int8")
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        backend = backends[model_type](src, kwargs, device, dtype, cfg.quantize == "int8")
    except OSError as exc:
        raise weights.not_found(resource, cfg.model, exc) from exc
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{resource}: could not load {cfg.model!r}: {exc}") from exc
    log.info("%s: loaded %s (%s) on %s as %s", resource, cfg.model, model_type, device, dtype)
    return LoadedModel(backend)


SUPPORTED_MODEL_TYPES = ("grounding-dino", "owlv2")


def _loaded_model(factory: Any, source: str, kwargs: dict[str, Any], device: str, dtype: Any, int8: bool) -> Any:
    import torch

    model = factory.from_pretrained(source, **kwargs).to(device=device, dtype=dtype).eval()
    if int8:
        model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]  # untyped in torch
            model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


class _GroundingDino:
    """Scores a box per class from the token span of that class in the prompt, so a box never carries a prompt fragment.

    score = the highest token probability inside the class's span (Grounding DINO's box score, restricted to the class);
    text support = the mean over the span, so a multi-word class ("traffic light") needs all its words, which is what
    the reference `text_threshold` decides when it assembles a phrase.
    """

    default_thresholds = (0.35, 0.25)  # the Grounding DINO authors' defaults
    default_input_size = 480

    def __init__(self, source: str, kwargs: dict[str, Any], device: str, dtype: Any, int8: bool) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(source, **kwargs)
        self.model = _loaded_model(AutoModelForZeroShotObjectDetection, source, kwargs, device, dtype, int8)
        self.device, self.dtype = device, dtype
        self.max_text_len = self.model.config.max_text_len

    def encode_text(self, classes: tuple[str, ...]) -> dict[str, Any]:
        import torch

        prompt, spans = "", []
        for cls in classes:
            spans.append((len(prompt), len(prompt) + len(cls)))
            prompt += cls.lower() + ". "
        enc = self.processor.tokenizer(prompt.strip(), return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0]
        if offsets.shape[0] > self.max_text_len:
            raise InputError(f"the query has {offsets.shape[0]} tokens; this model reads at most {self.max_text_len}")
        nonempty = offsets[:, 1] > offsets[:, 0]
        span = torch.stack([nonempty & (offsets[:, 0] < end) & (offsets[:, 1] > start) for start, end in spans])
        if not bool(span.any(dim=1).all()):
            raise InputError(f"the tokenizer kept no tokens for some of {list(classes)}")
        return {"inputs": {k: v.to(self.device) for k, v in enc.items()}, "span": span.to(self.device)}

    def infer(self, images: Sequence[Image.Image], text: dict[str, Any], input_size: int) -> list[Raw]:
        import torch

        size = {"shortest_edge": input_size, "longest_edge": round(input_size * 1333 / 800)}
        pixels = self.processor.image_processor(images, size=size, return_tensors="pt")
        n = len(images)
        with torch.inference_mode():
            out = self.model(
                pixel_values=pixels["pixel_values"].to(self.device, self.dtype),
                pixel_mask=pixels["pixel_mask"].to(self.device),
                **{k: v.expand(n, -1) for k, v in text["inputs"].items()},
            )
            span = text["span"]  # (C, L)
            probs = out.logits[..., : span.shape[1]].float().sigmoid()  # (B, Q, L)
            in_span = probs.unsqueeze(2) * span  # (B, Q, C, L)
            score = in_span.amax(dim=-1)
            support = in_span.sum(dim=-1) / span.sum(dim=-1)
            boxes = _xyxy(out.pred_boxes.float())
        return [
            (_scaled(boxes[i], im.width, im.height), score[i].cpu().numpy(), support[i].cpu().numpy())
            for i, im in enumerate(images)
        ]


class _Owlv2:
    """Embeds each class once (`encode_text`) and reuses the embeddings: a frame costs only the image tower and the heads."""

    default_thresholds = (0.1, 0.0)  # OWLv2 scores run low; it has no separate text score
    default_input_size = 960

    def __init__(self, source: str, kwargs: dict[str, Any], device: str, dtype: Any, int8: bool) -> None:
        from transformers import AutoProcessor, Owlv2ForObjectDetection

        self.processor = AutoProcessor.from_pretrained(source, **kwargs)
        self.model = _loaded_model(Owlv2ForObjectDetection, source, kwargs, device, dtype, int8)
        self.device, self.dtype = device, dtype
        self.native_size = self.model.config.vision_config.image_size

    def encode_text(self, classes: tuple[str, ...]) -> Any:
        import torch

        enc = self.processor.tokenizer(list(classes), padding="max_length", truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return self.model.owlv2.get_text_features(**{k: v.to(self.device) for k, v in enc.items()}).pooler_output

    def infer(self, images: Sequence[Image.Image], text: Any, input_size: int) -> list[Raw]:
        import torch

        pixels = self.processor.image_processor(images, size={"height": input_size, "width": input_size},
                                                return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        interpolate = input_size != self.native_size
        n, c = len(images), text.shape[0]
        with torch.inference_mode():
            feature_map, _ = self.model.image_embedder(pixels, interpolate_pos_encoding=interpolate)
            feats = feature_map.reshape(n, -1, feature_map.shape[-1])
            queries = text.unsqueeze(0).expand(n, -1, -1)
            logits, _ = self.model.class_predictor(feats, queries, torch.ones(n, c, dtype=torch.bool, device=self.device))
            score = logits.float().sigmoid()
            boxes = _xyxy(self.model.box_predictor(feats, feature_map, interpolate).float())
        # Boxes are relative to the square the frame was padded to (bottom and right), so both axes scale by its side.
        return [
            (_scaled(boxes[i], max(im.size), max(im.size)), score[i].cpu().numpy(), score[i].cpu().numpy())
            for i, im in enumerate(images)
        ]


def _xyxy(cxcywh: torch.Tensor) -> torch.Tensor:
    import torch

    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def _scaled(boxes: torch.Tensor, width: float, height: float) -> npt.NDArray[np.float32]:
    return (boxes.cpu().numpy() * np.array([width, height, width, height], np.float32)).astype(np.float32)
