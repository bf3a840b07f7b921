"""The filter module under concurrent streams: every call answers, none fails for the module's own plumbing.

Each call on a failing frame makes the filter log a warning; a module's logs go to its parent over the same connection its
dependency clients use. 8 streams of calls, half of them logging, must all come back (the module shared one gRPC client
across two event loops, and 2 in ~1000 calls failed with INTERNAL "... is bound to a different event loop")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from grpclib import GRPCError
from PIL import Image
from support import TEST_MODULES, Machine, connect, encode, module
from viam.media.video import CameraMimeType, ViamImage
from viam.services.vision import VisionClient

STREAMS, CALLS = 8, 40


def test_eight_concurrent_streams_through_a_logging_filter_all_answer(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    images = {}
    for name, colour in (("ok.jpg", (220, 30, 30)), ("fail.jpg", (20, 20, 20))):
        images[name] = encode(Image.new("RGB", (64, 48), colour), quality=95)
        (frames / name).write_bytes(images[name])
    (tmp_path / "boxes.json").write_text(json.dumps({"ok.jpg": [[8, 8, 40, 40, 0.9, "person"]]}))
    config = {"modules": [module("filter-stages", TEST_MODULES / "filter_stages"), module("autolabel-filter")],
              "services": [
                  {"name": "proposer", "api": "rdk:service:vision", "model": "test:vision:scripted-proposer",
                   "attributes": {"frames": str(frames), "boxes": str(tmp_path / "boxes.json"), "fail": ["fail.jpg"]}},
                  {"name": "vlm", "api": "rdk:service:vision", "model": "test:vision:colour-verifier",
                   "attributes": {"batch": "verify"}},
                  {"name": "labeler", "api": "rdk:service:vision", "model": "labelsieve:vision:autolabel-filter",
                   "attributes": {"detector": "proposer", "verifier": "vlm", "rules": [
                       {"detect": "person", "question": "Glasses?", "label": "glasses"}]}}]}
    machine = Machine(config, tmp_path)
    try:
        async def run() -> tuple[int, list[str]]:
            robot = await connect(machine.address)
            try:
                labeler = VisionClient.from_robot(robot, "labeler")
                kept, failures = 0, []

                async def stream(s: int) -> None:
                    nonlocal kept
                    for i in range(CALLS):
                        name = "fail.jpg" if (s + i) % 2 else "ok.jpg"
                        try:
                            found = await labeler.get_detections(ViamImage(images[name], CameraMimeType.JPEG))
                        except GRPCError as exc:
                            failures.append(f"{exc.status.name}: {exc.message}")
                            continue
                        kept += len(found)

                await asyncio.gather(*(stream(s) for s in range(STREAMS)))
                return kept, failures
            finally:
                await robot.close()

        kept, failures = asyncio.run(run())
    finally:
        machine.stop()
    odd = [line for line in machine.lines if "frame skipped" in line and "scripted failure on fail.jpg" not in line]
    assert failures == [] and odd == []
    assert kept == STREAMS * CALLS // 2  # every "ok" frame's red box verified; every "fail" frame labelled nothing
    assert machine.log.count("frame skipped: proposer failed") >= 1  # the module's logs reached the runtime
