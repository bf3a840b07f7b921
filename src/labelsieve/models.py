"""One model slot per model-backed resource: load off the event loop, serve while a replacement loads, swap, cache.

viam-sdk reconfigures a resource by closing the object and calling `new()` again, so a resource cannot keep its model on
itself: a threshold edit would reload the weights and a `model` edit would fail every call until the new weights arrive.
Instead the model lives in the resource's `ModelSlot`, process-wide and keyed by the resource name, so the new object
finds it there:

    slot = ModelSlot.for_resource(config.name)        # in new(): the same slot as the closed object's
    slot.load(ModelKey(model=cfg.model, ...), factory) # instant when that key is loaded; else loads in the background
    model = await slot.get()                           # in a call: the current model (or the load's error)
    slot.release()                                     # in close(): kept for a grace period, then evicted

A key that differs from the one being served loads beside it (under `weights.loading()`, one load at a time per
process) while calls keep getting the current model; when it is ready the slot switches and the old model is dropped.
A failed load replaces the current model too: calls then fail with the load's error, naming the configured model,
rather than silently answering with a model the config no longer names.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from labelsieve import weights
from labelsieve.errors import LabelsieveError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["ModelKey", "ModelSlot", "cached", "loads", "resolve_device", "resolve_dtype"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a released slot keeps its model for a reconfigure (close, then new) or re-add that reuses it.
GRACE_S = float(os.environ.get("LABELSIEVE_MODEL_GRACE_S", "30"))


@dataclasses.dataclass(frozen=True)
class ModelKey:
    """Everything that changes the loaded weights; two resources with equal keys share one loaded model."""

    model: str
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    #: Anything else that changes the loaded object, as sorted (name, value) pairs, e.g. (("imgsz", 512),).
    extra: tuple[tuple[str, Any], ...] = ()
    #: What the factory builds ("grounding-detector", "vlm-verifier", ...), so different loaders never share an entry.
    kind: str = ""


#: Completed or attempted loads per key, so tests and benchmarks can count real loads.
loads: collections.Counter[ModelKey] = collections.Counter()


class _Entry:
    """One model in the process-wide cache: its (pending) future and the slots using it."""

    def __init__(self, key: ModelKey) -> None:
        self.key, self.future, self.users = key, Future[Any](), 0

    @property
    def failed(self) -> bool:
        return self.future.done() and self.future.exception() is not None


_CACHE: dict[ModelKey, _Entry] = {}
_LOCK = threading.RLock()  # guards _CACHE, every slot's state and ModelSlot._slots


def cached(key: ModelKey) -> bool:
    """Whether the process holds (or is loading) the model for `key`."""
    with _LOCK:
        return key in _CACHE


def _acquire(key: ModelKey, factory: Callable[[], Any], resource: str) -> _Entry:
    entry = _CACHE.get(key)
    if entry is None or entry.failed:  # a failed load is retried by the next load() that asks for it
        entry = _CACHE[key] = _Entry(key)
        threading.Thread(target=_run, args=(entry, factory, resource), name=f"load {resource}", daemon=True).start()
    entry.users += 1
    return entry


def _release(entry: _Entry) -> None:
    entry.users -= 1
    if entry.users <= 0 and _CACHE.get(entry.key) is entry:
        del _CACHE[entry.key]
        log.info("released %s", entry.key.model)


def _run(entry: _Entry, factory: Callable[[], Any], resource: str) -> None:
    try:
        with weights.loading():
            loads[entry.key] += 1
            model = factory()
    except LabelsieveError as exc:
        log.error("%s: the model did not load: %s", resource, exc)
        entry.future.set_exception(exc)
    except Exception as exc:
        log.exception("%s: loading %s failed", resource, entry.key.model)
        entry.future.set_exception(ModelError(f"{resource}: could not load {entry.key.model!r}: "
                                              f"{type(exc).__name__}: {exc}"))
    else:
        entry.future.set_result(model)


class ModelSlot(Generic[T]):
    """The model a resource serves with, surviving the close/new pair of a reconfigure. Thread-safe."""

    _slots: ClassVar[dict[str, ModelSlot[Any]]] = {}

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._active: _Entry | None = None  # serves calls (may still be loading: the first load)
        self._next: _Entry | None = None  # loading beside the active one
        self._timer: threading.Timer | None = None

    @classmethod
    def for_resource(cls, name: str) -> ModelSlot[Any]:
        with _LOCK:
            slot = cls._slots.get(name)
            if slot is None:
                slot = cls._slots[name] = cls(name)
            return slot

    @property
    def key(self) -> ModelKey | None:
        """The key of the model calls get now (loaded or still loading)."""
        active = self._active
        return active.key if active else None

    def load(self, key: ModelKey, factory: Callable[[], T]) -> Future[T]:
        """Make `key` the slot's model: instant if it is current or cached, else loaded in the background while the
        current model keeps serving. Returns the future of that load."""
        with _LOCK:
            self._cancel_timer()
            active, pending = self._active, self._next
            if active is not None and active.key == key and not active.failed:
                self._drop_next()
                return active.future
            if pending is not None and pending.key == key:
                return pending.future
            self._drop_next()
            entry = _acquire(key, factory, self.resource)
            if active is None or active.failed or not active.future.done() or entry.future.done():
                self._swap(entry)  # nothing worth serving meanwhile (or nothing to wait for): switch now
            else:
                self._next = entry
                entry.future.add_done_callback(lambda _: self._promote(entry))
            return entry.future

    async def get(self) -> T:
        """The current model, waiting for the first load; a failed load raises its error on every call."""
        entry = self._require()
        if entry.future.done():  # every call after the load: wrapping a done future costs a loop wake-up through its pipe
            loaded: T = entry.future.result()
            return loaded
        model: T = await asyncio.wrap_future(entry.future)
        return model

    def get_sync(self) -> T:
        """`get` for worker threads."""
        result: T = self._require().future.result()
        return result

    def release(self) -> None:
        """The resource closed: keep the model `GRACE_S` seconds for a reconfigure's `new()`, then let it go."""
        with _LOCK:
            self._cancel_timer()
            self._timer = threading.Timer(GRACE_S, self._evict)
            self._timer.daemon = True
            self._timer.start()

    def _require(self) -> _Entry:
        entry = self._active
        if entry is None:
            raise ModelError(f"{self.resource}: no model is loaded (the resource was closed)")
        return entry

    def _promote(self, entry: _Entry) -> None:
        with _LOCK:
            if self._next is entry:
                self._next = None
                self._swap(entry)

    def _swap(self, entry: _Entry) -> None:
        old, self._active = self._active, entry
        if old is not None:
            _release(old)

    def _drop_next(self) -> None:
        if self._next is not None:
            _release(self._next)
            self._next = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _evict(self) -> None:
        with _LOCK:
            self._drop_next()
            if self._active is not None:
                _release(self._active)
                self._active = None
            self._timer = None


def resolve_device(device: str, resource: str, *, cpu_only: bool = False) -> str:
    """"auto" -> "cuda" when torch sees a GPU (and the model may use it), else "cpu"; an unusable "cuda" is a ModelError."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"{resource}: device {device!r} was requested but torch sees no CUDA GPU; "
                         "set device to 'cpu' or 'auto'")
    if device == "auto":
        return "cpu" if cpu_only or not torch.cuda.is_available() else "cuda"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """"auto" -> float16 on a GPU, float32 on a CPU (where half precision is slow or unsupported)."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    resolved: torch.dtype = getattr(torch, dtype)
    return resolved
