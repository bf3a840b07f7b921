"""The local backend on tiny random-weight VLMs saved to disk and loaded the way a user's checkpoint directory is."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_vlm_openai import load_module

from labelsieve.demo.tiny_vlms import BUILDERS
from labelsieve.errors import ModelError, WeightsNotFoundError
from labelsieve.verify import Verdict, Verifier
from labelsieve.verify.transformers_backend import LoadedVlm

QUESTION = "Is this person wearing glasses on their face?"
CROPS = [Image.new("RGB", (50, 40), (200, 30, 30)), Image.new("RGB", (30, 60), (30, 30, 200))]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def local(path: Path, **attrs: Any) -> Verifier:
    return Verifier.from_attributes({"backend": "transformers", "model": str(path), "imgsz": 0, **attrs}, "vlm")


def loaded(v: Verifier) -> LoadedVlm:
    result: LoadedVlm = v.backend.start().result()  # type: ignore[attr-defined]
    return result


def instrument(v: Verifier) -> list[int]:
    """Load now, forbid generate(), and count forward passes."""
    model = loaded(v).model
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    model.generate = lambda *a, **k: pytest.fail("generate() must not be used for a yes/no answer")
    return calls


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_one_forward_per_crop_and_well_formed_verdicts(tiny_dirs: dict[str, Path], family: str) -> None:
    v = local(tiny_dirs[family])
    forwards = instrument(v)
    verdicts = v.verify_sync(CROPS, QUESTION)
    assert len(forwards) == len(CROPS)
    for verdict in verdicts:
        assert isinstance(verdict, Verdict) and verdict.p_yes is not None and 0 <= verdict.p_yes <= 1
        assert verdict == Verdict.from_p_yes(verdict.p_yes, v.config.yes_threshold, v.config.no_threshold)
    assert v.verify_sync(CROPS, QUESTION) == verdicts and len(forwards) == len(CROPS)  # cache hits: no forward
    assert v.cache_hits == len(CROPS)


def test_thresholds_decide_the_answer(tiny_dirs: dict[str, Path]) -> None:
    """Random weights put p_yes near 0.5: the default band calls that unsure, never yes."""
    (verdict,) = local(tiny_dirs["llava"]).verify_sync(CROPS[:1], QUESTION)
    assert verdict.answer == "unsure" and 0.4 < verdict.p_yes < 0.6
    always_no = local(tiny_dirs["llava"], yes_threshold=1.0, no_threshold=0.99).verify_sync(CROPS[:1], QUESTION)
    assert always_no[0].answer == "no"


def test_smolvlm_imgsz_sets_the_encoder_tile(tiny_dirs: dict[str, Path]) -> None:
    v = local(tiny_dirs["idefics3"], imgsz=32)
    v.verify_sync(CROPS[:1], QUESTION)
    assert loaded(v).processor.image_seq_len == 1  # (32 / patch 16)^2 / shuffle 2^2
    with pytest.raises(ModelError, match="'imgsz' 48 must be a multiple of 32"):
        local(tiny_dirs["idefics3"], imgsz=48).verify_sync(CROPS[:1], QUESTION)


def test_missing_weights_name_the_model_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIAM_MODULE_DATA", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as caught:
        local(Path("labelsieve-test/no-such-vlm")).verify_sync(CROPS[:1], QUESTION)
    message = str(caught.value)
    assert "'labelsieve-test/no-such-vlm'" in message and str(tmp_path / "hf") in message and "local" in message


def test_inference_does_not_block_the_event_loop(tiny_dirs: dict[str, Path]) -> None:
    """The forward waits until the event loop has run a task: a forward on the loop itself would never return."""
    # a revision (ignored for a local directory) gives this test its own loaded model, since it patches it
    v = local(tiny_dirs["llava"], revision="no-block")
    model = loaded(v).model
    forward, loop_ran = model.forward, threading.Event()
    model.forward = lambda *a, **k: (loop_ran.wait(30) or pytest.fail("the loop was blocked"), forward(*a, **k))[1]

    async def scenario() -> None:
        async def on_the_loop() -> None:
            await asyncio.sleep(0)
            loop_ran.set()

        await asyncio.gather(v.verify(CROPS[:1], QUESTION), on_the_loop())

    asyncio.run(scenario())
    assert loop_ran.is_set()


def test_module_loads_in_background_and_reports_missing_weights(tiny_dirs: dict[str, Path],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from grpclib import GRPCError, Status
    from viam.media.video import ViamImage
    from viam.proto.app.robot import ComponentConfig
    from viam.utils import dict_to_struct

    cls = load_module().VlmVerifierService

    def service(model: str, name: str) -> Any:
        attrs = {"backend": "transformers", "model": model, "imgsz": 0, "default_question": QUESTION}
        return cls.new(ComponentConfig(name=name, attributes=dict_to_struct(attrs)), {})

    buf = io.BytesIO()
    CROPS[0].save(buf, format="PNG")
    image = ViamImage(buf.getvalue(), "image/png")

    async def scenario() -> None:
        (result,) = await service(str(tiny_dirs["paligemma"]), "vlm").get_classifications(image, 1)
        assert result.class_name in ("yes", "no", "unsure") and 0 <= result.confidence <= 1
        broken = service("labelsieve-test/no-such-vlm", "broken")
        with pytest.raises(GRPCError) as caught:
            await broken.get_classifications(image, 1)
        assert caught.value.status == Status.FAILED_PRECONDITION and "no-such-vlm" in caught.value.message
        await broken.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "broken: the model did not load" in caplog.text
