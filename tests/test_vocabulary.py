"""One word for one thing across config keys, CLI flags and Python arguments; old keys still read, with one log line."""

from __future__ import annotations

import dataclasses
import logging
import typing

import pytest

from labelsieve.detect.config import GroundingDetectorConfig
from labelsieve.detect.fast import FastDetectorConfig
from labelsieve.errors import ConfigError
from labelsieve.verify.config import VerifierConfig

MODELS = (GroundingDetectorConfig, VerifierConfig, FastDetectorConfig)


def test_device_and_dtype_mean_the_same_everywhere() -> None:
    for config in MODELS:
        hints, defaults = typing.get_type_hints(config), {f.name: f.default for f in dataclasses.fields(config)}
        assert typing.get_args(hints["device"]) == ("auto", "cpu", "cuda") and defaults["device"] == "auto", config
        if "dtype" in defaults:
            assert defaults["dtype"] == "auto", config
    assert {"imgsz"} <= {f.name for f in dataclasses.fields(GroundingDetectorConfig)} & \
        {f.name for f in dataclasses.fields(VerifierConfig)}


@pytest.mark.parametrize(("config", "old", "attrs"), [(GroundingDetectorConfig, "input_size", {}),
                                                      (VerifierConfig, "image_size", {"backend": "transformers"})])
def test_old_size_keys_still_work_and_name_the_new_one(config: typing.Any, old: str, attrs: dict[str, str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parsed = config.parse("res", {**attrs, old: 256})
    assert parsed.imgsz == 256
    assert [r.getMessage() for r in caplog.records] == [f"res: 'attributes.{old}' is deprecated; call it 'imgsz'"]
    with pytest.raises(ConfigError, match=f"'attributes.{old}' is the old name of 'imgsz', which is also set"):
        config.parse("res", {**attrs, old: 256, "imgsz": 256})
