"""labelsieve.models: a resource's model slot across viam-sdk's close/new reconfigure, with factories that stand in for
weights (the grounding detector's tests do the same with real tiny models)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import pytest

from labelsieve import models
from labelsieve.errors import ModelError, WeightsNotFoundError
from labelsieve.models import ModelKey, ModelSlot

_names = itertools.count()


def key(model: str) -> ModelKey:
    """A key no other test uses: the cache is process-wide."""
    return ModelKey(f"{model}-{next(_names)}", kind="test")


def gated(value: str) -> tuple[Callable[[], str], threading.Event]:
    """A factory that loads only when the returned event is set."""
    release = threading.Event()

    def factory() -> str:
        assert release.wait(30), "the test never let the load finish"
        return value

    return factory, release


def test_the_same_key_loads_once_across_close_and_new() -> None:
    a = key("a")
    slot = ModelSlot.for_resource(f"res-{a.model}")
    assert slot.load(a, lambda: "A").result() == "A"
    slot.release()  # the old object's close()
    again = ModelSlot.for_resource(f"res-{a.model}")  # what the new object's new() finds
    assert again is slot
    assert again.load(a, lambda: pytest.fail("loaded again")).done()  # instant: no thread, no factory
    assert again.get_sync() == "A" and models.loads[a] == 1


def test_a_new_key_loads_beside_the_current_one_and_then_swaps() -> None:
    a, b = key("a"), key("b")
    slot: ModelSlot[str] = ModelSlot(f"res-{a.model}")
    slot.load(a, lambda: "A").result()
    factory, release = gated("B")
    loading = slot.load(b, factory)
    assert asyncio.run(slot.get()) == "A" and slot.key == a  # served by the current model meanwhile
    assert slot.load(b, factory) is loading  # asking again does not start a second load
    release.set()
    assert loading.result() == "B"
    assert slot.get_sync() == "B" and slot.key == b
    assert not models.cached(a) and models.loads[b] == 1  # the old model is released


def test_a_failed_load_fails_every_call_and_the_next_load_retries() -> None:
    a = key("missing")
    slot: ModelSlot[str] = ModelSlot(f"res-{a.model}")

    def missing() -> str:
        raise WeightsNotFoundError(f"weights for {a.model} are not here")

    def broken() -> str:
        raise RuntimeError("CUDA out of memory")

    slot.load(a, missing).exception()
    for _ in range(2):
        with pytest.raises(WeightsNotFoundError, match=a.model):
            asyncio.run(slot.get())
    assert slot.load(a, lambda: "A").result() == "A" and models.loads[a] == 2  # a config re-apply retries
    b = key("broken")
    slot.load(b, broken).exception()
    with pytest.raises(ModelError, match=r"could not load .*RuntimeError: CUDA out of memory"):
        slot.get_sync()  # a failed new model replaces the old one: calls never silently use a model not configured


def test_a_released_slot_lets_its_model_go_after_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "GRACE_S", 0.01)
    a = key("a")
    slot: ModelSlot[str] = ModelSlot(f"res-{a.model}")
    slot.load(a, lambda: "A").result()
    evicted = threading.Event()
    monkeypatch.setattr(slot, "_evict", lambda evict=slot._evict: (evict(), evicted.set()))
    slot.release()
    assert evicted.wait(30)
    assert not models.cached(a) and slot.key is None
    with pytest.raises(ModelError, match="no model is loaded"):
        slot.get_sync()


def test_two_resources_with_the_same_key_share_one_load() -> None:
    a = key("shared")
    first, second = ModelSlot(f"one-{a.model}"), ModelSlot(f"two-{a.model}")
    factory, release = gated("A")
    f1, f2 = first.load(a, factory), second.load(a, factory)
    release.set()
    assert f1.result() == f2.result() == "A" and models.loads[a] == 1
