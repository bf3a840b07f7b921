"""Where model weights come from, for every stage alike: a local directory as it is, or a hub id through the Hugging Face
cache (under `$VIAM_MODULE_DATA/hf` inside a module, so a module keeps its weights in its own writable folder)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelsieve.attributes import resolve_path
from labelsieve.errors import WeightsNotFoundError

__all__ = ["cache_dir", "loading", "not_found", "source"]

_LOAD_LOCK = threading.RLock()  # re-entrant: a ModelSlot holds it around a factory that may take it too


@contextmanager
def loading() -> Iterator[None]:
    """Hold while importing torch/transformers and loading weights. transformers' lazy imports are not thread-safe: two
    resources loading at once in one process failed with "cannot import name 'AutoConfig'". It also caps peak memory."""
    with _LOAD_LOCK:
        yield


def cache_dir() -> str | None:
    data = os.environ.get("VIAM_MODULE_DATA")
    return str(Path(data) / "hf") if data else None


def source(model: str, revision: str | None = None) -> tuple[str, dict[str, Any]]:
    """(what to pass to `from_pretrained`, its keyword arguments)."""
    local = resolve_path(model)
    if local.is_dir():
        return str(local), {}
    return model, {"revision": revision or None, "cache_dir": cache_dir()}


def not_found(resource: str, model: str, exc: BaseException) -> WeightsNotFoundError:
    cache = cache_dir() or "the default Hugging Face cache"
    return WeightsNotFoundError(
        f"{resource}: weights for {model!r} are neither a local directory nor in {cache}, and could not be downloaded "
        f"({type(exc).__name__}: {exc}). On a connected machine run `hf download {model}` and copy the Hugging Face cache "
        "here, or set 'model' to a local directory holding the model and its processor (save_pretrained)."
    )
