"""The auto-label filter through the runtime, with stand-in stages of fixed cost (tests/modules/filter_stages):
a proposer taking 300 ms a frame and a verifier taking 200 ms a call, 0 to 4 boxes a frame.

    .venv/bin/python bench/autolabel_filter.py [--frames 40] [--still 120]

(a) Kept frames per second against the limit: a frame costs at least the proposer plus one verifier call when it has
    boxes (its crops are verified in parallel), so the limit is frames / sum of those costs. Goal >= 0.9 of the limit.
(b) Verifier calls per frame, which must never exceed the boxes proposed.
(c) The near-duplicate gate on a still clip (sensor noise, JPEG) with occasional changes (an object appears, moves or
    leaves): goal >= 95% of the still frames skipped and every change examined.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from grpclib import GRPCError, Status
from PIL import Image, ImageDraw
from viam.services.vision import VisionClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import TEST_MODULES, Machine, camera, connect, module

PROPOSER_S, VERIFIER_S = 0.3, 0.2
RULES = [{"detect": "person", "question": "Glasses?", "label": "glasses"}]
SIZE = (640, 480)


def textured(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (SIZE[1] // 16, SIZE[0] // 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(SIZE, Image.Resampling.BILINEAR)


def busy_clip(folder: Path, frames: int) -> tuple[dict[str, list[list[Any]]], list[int]]:
    """Distinct frames with 0..4 person boxes each; the first box is red (verified "yes"), the others alternate."""
    folder.mkdir()
    boxes, counts = {}, []
    for i in range(frames):
        image, count = textured(i), i % 5
        draw = ImageDraw.Draw(image)
        rows = []
        for b in range(count):
            box = (30 + b * 150, 100, 130 + b * 150, 300)
            draw.rectangle(box, fill=(220, 30, 30) if b % 2 == 0 else (30, 30, 220))
            rows.append([*box, 0.9 - 0.1 * b, "person"])
        name = f"busy-{i:03d}.jpg"
        image.save(folder / name, quality=90)
        boxes[name], _ = rows, counts.append(count)
    return boxes, counts


def still_clip(folder: Path, frames: int, every: int) -> list[bool]:
    """A still scene with per-frame sensor noise; every `every` frames an object appears, moves or leaves. Returns,
    per frame, whether it shows a change (the first frame counts as one: nothing was examined before it)."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    scene, changes = np.asarray(textured(1000), np.float32), []
    for i in range(frames):
        changed = i % every == 0
        if changed and i:
            picture = Image.fromarray(np.asarray(textured(1000)))
            if (i // every) % 3:  # an object 100x200 at a new place, or none
                x = int(rng.integers(0, SIZE[0] - 100))
                ImageDraw.Draw(picture).rectangle((x, 150, x + 100, 350), fill=(230, 230, 230))
            scene = np.asarray(picture, np.float32)
        noisy = np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"still-{i:03d}.jpg", quality=90)
        changes.append(changed)
    return changes


def vision(name: str, model: str, /, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": model, "attributes": attributes}


async def capture(sieve: VisionClient, camera_name: str) -> bool:
    try:
        await sieve.capture_all_from_camera(camera_name, return_image=True, return_detections=True,
                                            extra={"fromDataManagement": True})
        return True
    except GRPCError as exc:
        if exc.status != Status.FAILED_PRECONDITION:
            raise
        return False


async def measure(address: str, counts: list[int], still: list[bool]) -> dict[str, Any]:
    robot = await connect(address)
    try:
        busy, gated = VisionClient.from_robot(robot, "busy"), VisionClient.from_robot(robot, "gated")
        verifier = VisionClient.from_robot(robot, "vlm")
        await capture(busy, "cam")  # warm up the connections on the first frame; the clip loops, so it comes again
        calls = (await verifier.do_command({"calls": {}}))["classify_calls"]
        elapsed, kept, per_frame = 0.0, 0, []
        for _ in counts:
            start = time.perf_counter()
            kept += await capture(busy, "cam")
            elapsed += time.perf_counter() - start
            now = (await verifier.do_command({"calls": {}}))["classify_calls"]
            per_frame.append(now - calls)
            calls = now
        examined = []
        for _ in still:
            await capture(gated, "still-cam")
            examined.append((await gated.do_command({"stats": {}}))["last_decision"]["outcome"] != "duplicate")
        return {"elapsed": elapsed, "kept": kept, "calls": per_frame, "examined": examined}
    finally:
        await robot.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--still", type=int, default=120)
    parser.add_argument("--every", type=int, default=20, help="frames between changes in the still clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        boxes, counts = busy_clip(root / "busy", args.frames)
        counts = counts[1:] + counts[:1]  # the warm-up took frame 0; the timed pass starts at frame 1 and wraps round
        still = still_clip(root / "still", args.still, args.every)
        (root / "boxes.json").write_text(json.dumps(boxes))
        filter_stages = TEST_MODULES / "filter_stages"
        config = {
            "modules": [module("media-camera"), module("filter-stages", filter_stages), module("autolabel-filter")],
            "components": [camera("cam", source=str(root / "busy")), camera("still-cam", source=str(root / "still"))],
            "services": [
                vision("proposer", "test:vision:scripted-proposer", frames=str(root / "busy"), boxes=str(root / "boxes.json"),
                       delay=PROPOSER_S),
                vision("vlm", "test:vision:colour-verifier", delay=VERIFIER_S),
                vision("busy", "labelsieve:vision:autolabel-filter", camera_name="cam", detector="proposer", verifier="vlm",
                       rules=RULES),
                vision("gated", "labelsieve:vision:autolabel-filter", camera_name="still-cam", detector="proposer",
                       verifier="vlm", rules=RULES),
            ],
        }
        with Machine(config, root, args=("--no-watch", "--log-level", "warning")) as machine:
            result = asyncio.run(measure(machine.address, counts, still))

    limit_s = sum(PROPOSER_S + (VERIFIER_S if n else 0.0) for n in counts)
    kept, elapsed = result["kept"], result["elapsed"]
    print(f"(a) {len(counts)} frames, 0-4 boxes each, proposer {PROPOSER_S * 1000:.0f} ms, verifier "
          f"{VERIFIER_S * 1000:.0f} ms a call")
    print(f"{'':<22}{'measured':>10}{'limit':>10}{'ratio':>8}")
    print(f"{'kept frames / s':<22}{kept / elapsed:>10.3f}{kept / limit_s:>10.3f}{limit_s / elapsed:>8.3f}")
    print(f"{'frames / s':<22}{len(counts) / elapsed:>10.3f}{len(counts) / limit_s:>10.3f}{limit_s / elapsed:>8.3f}")
    print(f"{'ms a frame over limit':<22}{(elapsed - limit_s) / len(counts) * 1000:>10.1f}")
    ok = limit_s / elapsed >= 0.9
    print(f"kept frames/s at {limit_s / elapsed:.3f} of the limit (goal >= 0.9): {'OK' if ok else 'UNDER GOAL'}")

    calls, over = result["calls"], sum(c > n for c, n in zip(result["calls"], counts))
    print(f"(b) verifier calls a frame: mean {np.mean(calls):.2f} for {np.mean(counts):.2f} boxes proposed; "
          f"frames with more calls than boxes: {over} (goal 0): {'OK' if over == 0 else 'OVER GOAL'}")

    examined, changes = result["examined"], still
    still_frames = [e for e, c in zip(examined, changes) if not c]
    skipped = 1 - sum(still_frames) / len(still_frames)
    caught = sum(e for e, c in zip(examined, changes) if c)
    print(f"(c) still clip of {len(changes)} frames, {sum(changes)} changes: still frames skipped {skipped:.1%} "
          f"(goal >= 95%), changes examined {caught}/{sum(changes)} (goal all): "
          f"{'OK' if skipped >= 0.95 and caught == sum(changes) else 'UNDER GOAL'}")


if __name__ == "__main__":
    main()
