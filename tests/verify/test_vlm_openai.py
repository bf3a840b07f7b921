"""The openai backend against a real HTTP server on 127.0.0.1 that injects faults; and the Viam module shell over it."""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib.util
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError, Status
from PIL import Image

from labelsieve.errors import BackendTimeout, BackendUnavailable, ConfigError, InputError
from labelsieve.verify import Verifier, VerifierConfig
from labelsieve.verify.openai_backend import OpenAIBackend
from support import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]

KEY_ENV, KEY = "LABELSIEVE_TEST_VLM_KEY", "sk-test-secret-4242"
RED, BLUE = Image.new("RGB", (48, 40), (220, 10, 10)), Image.new("RGB", (48, 40), (10, 10, 220))


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def verifier(base_url: str, **attrs: Any) -> Verifier:
    return Verifier.from_attributes({"base_url": base_url, "model": "fake-vlm", "api_key_env": KEY_ENV,
                                     "timeout": 5.0, "max_backoff": 0.05, **attrs}, "vlm")


def crop(i: int, color: tuple[int, int, int] = (220, 10, 10)) -> Image.Image:
    image = Image.new("RGB", (40, 40), color)
    image.putpixel((0, 0), (i % 256, i // 256, 0))  # distinct bytes, same answer
    return image


def test_yes_and_no_graded_by_logprobs(server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    yes, no = verifier(server.base_url).verify_sync([RED, BLUE], "Is it red?")
    assert (yes.answer, no.answer) == ("yes", "no")
    assert yes.confidence == pytest.approx(0.95) and no.confidence == pytest.approx(0.95)
    body = server.requests[0]["body"]
    assert body["temperature"] == 0 and body["max_tokens"] <= 8 and body["logprobs"] is True
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert KEY not in caplog.text


def test_without_logprobs_the_text_decides(server: FakeOpenAI) -> None:
    server.logprobs = False
    (verdict,) = verifier(server.base_url).verify_sync([RED], "Is it red?")
    assert (verdict.answer, verdict.confidence, verdict.p_yes) == ("yes", 1.0, None)


def test_weak_odds_fall_in_the_unsure_band(server: FakeOpenAI) -> None:
    server.p_answer = 0.55
    assert verifier(server.base_url).verify_sync([RED], "Is it red?")[0].answer == "unsure"


@pytest.mark.parametrize("reply", ["I cannot tell from this crop.", "Maybe", "", "There is no way to know"])
def test_hedged_or_unparseable_replies_are_unsure(server: FakeOpenAI, reply: str) -> None:
    server.reply = reply
    assert verifier(server.base_url).verify_sync([RED], "Is it red?")[0].answer == "unsure"


def test_endpoint_rejecting_logprobs_is_asked_without_them_once(server: FakeOpenAI) -> None:
    server.faults.append("reject_logprobs")
    v = verifier(server.base_url, max_concurrency=1)
    assert [x.answer for x in v.verify_sync([RED, crop(1, (10, 10, 200))], "Is it red?")] == ["yes", "no"]
    asked = [r["body"].get("logprobs", False) for r in server.requests]
    assert asked.count(True) == 1 and len(asked) == 3


def test_slow_answer_times_out_without_retry(server: FakeOpenAI) -> None:
    server.faults.append("slow:2")
    with pytest.raises(BackendTimeout, match="timeout"):
        verifier(server.base_url, timeout=0.3, max_retries=3).verify_sync([RED], "Is it red?")
    assert len(server.requests) == 1


def test_5xx_is_retried_then_succeeds(server: FakeOpenAI) -> None:
    server.faults.extend(["500", "503"])
    assert verifier(server.base_url, max_retries=2).verify_sync([RED], "Is it red?")[0].answer == "yes"
    assert len(server.requests) == 3


def test_5xx_after_retries_is_unavailable(server: FakeOpenAI) -> None:
    server.faults.extend(["500"] * 3)
    with pytest.raises(BackendUnavailable, match="3 attempt"):
        verifier(server.base_url, max_retries=2).verify_sync([RED], "Is it red?")


@pytest.mark.parametrize(("retry_after", "max_backoff", "slept"), [("1", 5.0, 1.0), ("3600", 0.2, 0.2)])
def test_429_retry_after_is_honoured_up_to_the_cap(server: FakeOpenAI, retry_after: str, max_backoff: float,
                                                  slept: float) -> None:
    server.faults.append(f"429:{retry_after}")
    config = VerifierConfig.parse("vlm", {"base_url": server.base_url, "model": "fake-vlm", "api_key_env": KEY_ENV,
                                          "max_backoff": max_backoff})
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    v = Verifier(config, "vlm", backend=OpenAIBackend(config, "vlm", sleep=record))
    assert v.verify_sync([RED], "Is it red?")[0].answer == "yes"
    assert sleeps == [slept] and len(server.requests) == 2


@pytest.mark.parametrize("fault", ["malformed", "drop"])
def test_broken_responses_are_retried_or_unavailable(server: FakeOpenAI, fault: str) -> None:
    server.faults.append(fault)
    assert verifier(server.base_url, max_retries=1).verify_sync([RED], "Is it red?")[0].answer == "yes"
    server.faults.extend([fault] * 2)
    with pytest.raises(BackendUnavailable):
        verifier(server.base_url, max_retries=1).verify_sync([BLUE], "Is it red?")


def test_cache_hits_cost_no_call_and_errors_are_not_cached(server: FakeOpenAI) -> None:
    v = verifier(server.base_url, max_retries=0)
    v.verify_sync([RED, RED.copy(), RED], "Is it red?")
    assert len(server.requests) == 1
    v.verify_sync([RED], "Is it red?")
    assert len(server.requests) == 1 and v.cache_hits >= 1
    v.verify_sync([RED], "Is it a cat?")  # another question is another answer
    assert len(server.requests) == 2
    server.faults.append("500")
    with pytest.raises(BackendUnavailable):
        v.verify_sync([BLUE], "Is it red?")
    assert v.verify_sync([BLUE], "Is it red?")[0].answer == "no" and len(server.requests) == 4


def test_a_failure_in_a_batch_fails_it_but_keeps_the_answers_that_arrived(server: FakeOpenAI) -> None:
    server.faults.append("500")
    v = verifier(server.base_url, max_retries=0, max_concurrency=1)
    with pytest.raises(BackendUnavailable):
        v.verify_sync([crop(1), crop(2), crop(3)], "Is it red?")
    assert [x.answer for x in v.verify_sync([crop(1), crop(2), crop(3)], "Is it red?")] == ["yes"] * 3
    assert len(server.requests) == 4  # only the failed crop was asked again


def test_concurrency_is_bounded_and_used() -> None:
    with FakeOpenAI(delay=0.2) as server:
        verifier(server.base_url, max_concurrency=4).verify_sync([crop(i) for i in range(8)], "Is it red?")
        assert server.peak_in_flight == 4  # bounded by max_concurrency, and all of it used (bench/ times it)
        assert len(server.requests) == 8


def test_questions_must_match_crops(server: FakeOpenAI) -> None:
    v = verifier(server.base_url)
    with pytest.raises(InputError, match="expected 2 non-empty questions"):
        v.verify_sync([RED, BLUE], ["only one"])
    with pytest.raises(InputError, match="default_question"):
        v.verify_sync([RED])
    assert verifier(server.base_url, default_question="Is it red?").verify_sync([RED])[0].answer == "yes"


def test_missing_key_is_a_config_error_naming_the_variable(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        verifier(server.base_url)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="yes_threshold"):
        VerifierConfig.parse("vlm", {"base_url": "http://x", "yes_threshold": 0.5})
    with pytest.raises(ConfigError, match="base_url"):
        VerifierConfig.parse("vlm", {"backend": "openai"})
    with pytest.raises(ConfigError, match="did you mean 'max_retries'"):
        VerifierConfig.parse("vlm", {"base_url": "http://x", "max_retry": 1})


# --- a real OpenAI-compatible server: `transformers serve` with a tiny random SmolVLM ---------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transformers_serve_round_trip(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists() and not shutil.which("transformers"):
        pytest.skip("`transformers serve` is not installed (pip install 'transformers[serving]')")
    from labelsieve.demo.tiny_vlms import build_idefics3

    model, port = str(build_idefics3(tmp_path / "smolvlm")), _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(exe), "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 90  # ~8 s here, ~20 s on a loaded machine
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail(f"`transformers serve` did not listen within 90 s (exit code {proc.poll()})")
        (verdict,) = verifier(f"http://127.0.0.1:{port}/v1", model=model, timeout=30).verify_sync([RED], "Is it red?")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    from labelsieve.verify.answers import parse_answer

    assert verdict.answer == parse_answer(verdict.raw)[0]  # random weights babble: whatever it said, read fail-closed


# --- the Viam module, in-process -----------------------------------------------------------------------------------

@functools.cache
def load_module() -> Any:
    """Imported once per session: importing registers the model in the SDK's global registry."""
    spec = importlib.util.spec_from_file_location("vlm_verifier_main", ROOT / "modules/vlm_verifier/main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _service(base_url: str, **attrs: Any) -> Any:
    from viam.proto.app.robot import ComponentConfig
    from viam.utils import dict_to_struct

    config = ComponentConfig(name="vlm", api="rdk:service:vision", model="labelsieve:vision:vlm-verifier",
                             attributes=dict_to_struct({"base_url": base_url, "model": "fake-vlm", "api_key_env": KEY_ENV,
                                                        "max_backoff": 0.05, "timeout": 5.0, **attrs}))
    cls = load_module().VlmVerifierService
    assert cls.validate_config(config) == ([], [])
    return cls.new(config, {})


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def test_module_classifies_and_batches(server: FakeOpenAI) -> None:
    from viam.media.video import ViamImage

    async def scenario() -> None:
        service = _service(server.base_url)
        (yes,) = await service.get_classifications(ViamImage(_jpeg(RED), "image/jpeg"), 1, extra={"question": "Red?"})
        (no,) = await service.get_classifications(ViamImage(_jpeg(BLUE), "image/jpeg"), 1, extra={"question": "Red?"})
        assert (yes.class_name, no.class_name) == ("yes", "no") and yes.confidence == pytest.approx(0.95)
        crops = [{"image": base64.b64encode(_jpeg(c)).decode(), "question": "Red?"} for c in (RED, BLUE, crop(7))]
        result = await service.do_command({"verify": {"crops": crops}})
        assert [v["answer"] for v in result["verdicts"]] == ["yes", "no", "yes"]
        assert (await service.get_properties()).classifications_supported
        await service.close()
        await service.close()  # reconfigure closes, idempotently

    asyncio.run(scenario())


@pytest.mark.parametrize(("call", "status"), [
    ("corrupt", Status.INVALID_ARGUMENT),
    ("detections", Status.UNIMPLEMENTED),
    ("camera", Status.UNIMPLEMENTED),
    ("unknown_command", Status.UNIMPLEMENTED),
    ("no_question", Status.INVALID_ARGUMENT),
    ("slow", Status.DEADLINE_EXCEEDED),
])
def test_module_errors_have_clear_statuses(server: FakeOpenAI, call: str, status: Status) -> None:
    from viam.media.video import ViamImage

    server.faults.append("slow:2")
    calls = {
        "corrupt": lambda s: s.get_classifications(ViamImage(b"\xff\xd8 not a jpeg", "image/jpeg"), 1,
                                                   extra={"question": "Red?"}),
        "detections": lambda s: s.get_detections(ViamImage(_jpeg(RED), "image/jpeg")),
        "camera": lambda s: s.get_classifications_from_camera("cam", 1),
        "unknown_command": lambda s: s.do_command({"explode": {}}),
        "no_question": lambda s: s.get_classifications(ViamImage(_jpeg(RED), "image/jpeg"), 1),
        "slow": lambda s: s.get_classifications(ViamImage(_jpeg(RED), "image/jpeg"), 1, extra={"question": "Red?"}),
    }

    async def scenario() -> None:
        service = _service(server.base_url, timeout=0.3)
        with pytest.raises(GRPCError) as caught:
            await calls[call](service)
        assert caught.value.status == status and "vlm" in caught.value.message

    asyncio.run(scenario())


def test_module_unreachable_endpoint_is_unavailable() -> None:
    from viam.media.video import ViamImage

    async def scenario() -> None:
        service = _service(f"http://127.0.0.1:{_free_port()}/v1", max_retries=1)
        with pytest.raises(GRPCError) as caught:
            await service.get_classifications(ViamImage(_jpeg(RED), "image/jpeg"), 1, extra={"question": "Red?"})
        assert caught.value.status == Status.UNAVAILABLE and "2 attempt" in caught.value.message

    asyncio.run(scenario())
