"""Test-only stand-ins for the auto-label filter's two stages, whose answers a test (or bench/) controls exactly.

- `test:vision:scripted-proposer`: `get_detections` returns the boxes listed for the frame in a JSON file,
  `{"<frame file name>": [[x0, y0, x1, y1, score, "class"], ...]}`. A frame is recognised by the SHA-256 of its bytes
  among the files under `frames` (the media camera passes files through untouched), so a test knows which frame came.
  Frames named in `fail` answer UNAVAILABLE. `delay` seconds per call stands in for a model's cost.
- `test:vision:colour-verifier`: answers by the crop's mean colour: red -> "yes", blue -> "no", green -> "unsure",
  magenta -> UNAVAILABLE (a verifier failing), anything else -> "maybe" (a class the filter must read as unsure), with
  confidence 0.9. `batch` chooses what
  `do_command({"verify": ...})` does: "verify" answers the batch, "unimplemented" answers UNIMPLEMENTED, "ignore" answers {}.

Both answer `do_command({"calls": {}})` with what they were asked, so a test can count model calls.
"""

import asyncio
import base64
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from grpclib import GRPCError, Status
from PIL import Image, ImageStat
from viam.media.video import ViamImage
from viam.module.module import Module
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.proto.service.vision import Classification, Detection
from viam.resource.base import ResourceBase
from viam.resource.easy_resource import EasyResource
from viam.resource.easy_resource import stub_model as stub
from viam.services.vision import Vision
from viam.utils import struct_to_dict


@stub
class ScriptedProposer(Vision, EasyResource):
    MODEL: ClassVar = "test:vision:scripted-proposer"
    frames: dict[str, str]  # sha256 of the file's bytes -> file name
    boxes: dict[str, list[list[Any]]]
    fail: set[str]
    delay: float
    calls: int
    queries: list[Any]

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        attributes = struct_to_dict(config.attributes)
        self = cls(config.name)
        self.frames = {hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in Path(attributes["frames"]).rglob("*.jpg")}
        self.boxes = json.loads(Path(attributes["boxes"]).read_text())
        self.fail, self.delay = set(attributes.get("fail", [])), float(attributes.get("delay", 0.0))
        self.calls, self.queries = 0, []
        return self

    async def get_detections(self, image: ViamImage, *, extra: Mapping[str, Any] | None = None,
                             timeout: float | None = None, **kwargs: Any) -> list[Detection]:
        self.calls += 1
        self.queries.append((extra or {}).get("query"))
        await asyncio.sleep(self.delay)
        name = self.frames.get(hashlib.sha256(image.data).hexdigest(), "")
        if name in self.fail:
            raise GRPCError(Status.UNAVAILABLE, f"{self.name}: scripted failure on {name}")
        return [Detection(x_min=int(x0), y_min=int(y0), x_max=int(x1), y_max=int(y1), confidence=score, class_name=cls)
                for x0, y0, x1, y1, score, cls in self.boxes.get(name, [])]

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        return {"calls": self.calls, "queries": self.queries}


def _answer(data: bytes) -> Classification:
    red, green, blue = ImageStat.Stat(Image.open(io.BytesIO(data)).convert("RGB")).mean
    if min(red, blue) > green + 80:
        raise GRPCError(Status.UNAVAILABLE, "scripted failure on a magenta crop")
    ranked = sorted([(red, "yes"), (green, "unsure"), (blue, "no")], reverse=True)
    answer = ranked[0][1] if ranked[0][0] > ranked[1][0] + 40 else "maybe"
    return Classification(class_name=answer, confidence=0.9)


@stub
class ColourVerifier(Vision, EasyResource):
    MODEL: ClassVar = "test:vision:colour-verifier"
    batch: str
    delay: float
    counts: dict[str, int]
    questions: list[str]

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        attributes = struct_to_dict(config.attributes)
        self = cls(config.name)
        self.batch, self.delay = attributes.get("batch", "unimplemented"), float(attributes.get("delay", 0.0))
        self.counts = {"classify_calls": 0, "batch_calls": 0, "in_flight": 0, "peak_in_flight": 0}
        self.questions = []
        return self

    async def get_classifications(self, image: ViamImage, count: int, *, extra: Mapping[str, Any] | None = None,
                                  timeout: float | None = None, **kwargs: Any) -> list[Classification]:
        self.counts["classify_calls"] += 1
        self.counts["in_flight"] += 1
        self.counts["peak_in_flight"] = max(self.counts["peak_in_flight"], self.counts["in_flight"])
        try:
            self.questions.append(str((extra or {}).get("question")))
            await asyncio.sleep(self.delay)
            return [_answer(image.data)]
        finally:
            self.counts["in_flight"] -= 1

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, Any]:
        if "calls" in command:
            return {**self.counts, "questions": self.questions}
        if self.batch == "ignore":
            return {}
        if self.batch != "verify" or "verify" not in command:
            raise GRPCError(Status.UNIMPLEMENTED, f"{self.name}: unknown command {sorted(command)}")
        self.counts["batch_calls"] += 1
        crops: Sequence[Mapping[str, Any]] = command["verify"]["crops"]
        self.questions += [str(c.get("question")) for c in crops]
        await asyncio.sleep(self.delay)
        verdicts = [_answer(base64.b64decode(c["image"])) for c in crops]
        return {"verdicts": [{"answer": v.class_name, "confidence": v.confidence} for v in verdicts]}


if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
