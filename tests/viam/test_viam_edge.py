"""The Viam edge: the resource decorator, the error seam, do_command payloads and Detection conversions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
from grpclib import GRPCError, Status
from support import noise, solid
from viam.errors import NoCaptureToStoreError
from viam.proto.service.vision import Detection
from viam.resource.easy_resource import EasyResource
from viam.services.vision import Vision

from labelsieve.detections import Detections
from labelsieve.errors import InputError, UnsupportedError
from labelsieve.viam import commands
from labelsieve.viam.convert import detections_from_viam, detections_to_viam
from labelsieve.viam.resource import labelsieve_resource


@labelsieve_resource("get_properties and do_command {\"ping\": {}}")
class Pinger(Vision, EasyResource, register=False):
    MODEL: ClassVar = "labelsieve-tests:vision:pinger"

    async def get_properties(self, **kwargs: Any) -> Vision.Properties:
        raise NoCaptureToStoreError()  # what the auto-label filter raises; viam-server matches status and message

    async def do_command(self, command: Mapping[str, Any], **kwargs: Any) -> Mapping[str, Any]:
        commands.command_of(self.name, command, "ping", "ping")
        raise ValueError("a bug")


def test_the_decorator_fills_stubs_and_translates_errors() -> None:
    pinger = Pinger("p")  # instantiable: every abstract method was filled

    async def scenario() -> None:
        with pytest.raises(GRPCError) as caught:
            await pinger.get_detections_3d("cam")
        assert caught.value.status == Status.UNIMPLEMENTED
        assert caught.value.message == ("p: get_detections_3d is not offered by labelsieve-tests:vision:pinger; "
                                        "supported: get_properties and do_command {\"ping\": {}}")
        with pytest.raises(NoCaptureToStoreError) as passed:  # untouched, not turned into INTERNAL
            await pinger.get_properties()
        assert passed.value.grpc_code == Status.FAILED_PRECONDITION
        with pytest.raises(GRPCError) as caught:
            await pinger.do_command({"pong": {}})
        assert caught.value.status == Status.UNIMPLEMENTED and "supported: ping" in str(caught.value.message)
        with pytest.raises(GRPCError) as caught:
            await pinger.do_command({"ping": {}})
        assert caught.value.status == Status.INTERNAL and "ValueError: a bug" in str(caught.value.message)

    asyncio.run(scenario())


def test_detect_and_verify_payloads_round_trip_and_name_bad_fields() -> None:
    frames = [solid("red", 32, 24), noise(40, 30)]
    request = commands.parse_detect("det", commands.detect_command(frames, ["dog", "cat"])["detect"])
    assert [f.size for f in request.images] == [(32, 24), (40, 30)] and request.query == ["dog", "cat"]
    verify = commands.parse_verify("vlm", {**commands.verify_command(frames, ["Red?", ""])["verify"], "question": "Q?"})
    assert verify.questions == ["Red?", "Q?"] and len(verify.crops) == 2
    for body, field in [({}, "det: 'detect.images' must be a non-empty list"), ({"images": []}, "'detect.images' must"),
                        ({"images": ["aGVsbG8="]}, "det: detect.images[0]: could not decode")]:
        with pytest.raises(InputError) as caught:
            commands.parse_detect("det", body)
        assert field in str(caught.value)
    with pytest.raises(InputError, match=r"verify\.crops\[0\]\.question must be a string"):
        commands.parse_verify("vlm", {"crops": [{**commands.verify_command(frames[:1], "?")["verify"]["crops"][0],
                                                 "question": 3}]})
    with pytest.raises(UnsupportedError, match=r"unknown command \['detect', 'x'\]"):
        commands.command_of("det", {"detect": {}, "x": 1}, "detect", "detect")
    dets = Detections(np.array([[1.5, 2, 10, 12]]), [0.75], ["dog"])
    (back,) = commands.detections_of_reply(commands.detect_reply([dets]))
    assert back.xyxy.tolist() == [[1.5, 2, 10, 12]] and back.class_name.tolist() == ["dog"]


def test_detections_from_viam_inverts_to_viam_and_reads_normalized_boxes() -> None:
    dets = Detections(np.array([[10, 20, 30, 40], [0, 0, 64, 48]]), [0.9, 0.5], ["dog", "cat"], classes=("cat", "dog"))
    back = detections_from_viam(detections_to_viam(dets, 64, 48), classes=("cat", "dog"))
    assert back.xyxy.tolist() == dets.xyxy.tolist() and back.class_id.tolist() == [1, 0]
    normalized = [Detection(x_min_normalized=0.25, y_min_normalized=0.5, x_max_normalized=0.5, y_max_normalized=1.0,
                            confidence=0.5, class_name="dog")]
    assert detections_from_viam(normalized, width=64, height=48).xyxy.tolist() == [[16, 24, 32, 48]]
    with pytest.raises(InputError, match="normalized coordinates only, and no image size"):
        detections_from_viam(normalized)
