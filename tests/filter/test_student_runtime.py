"""Active learning through the runtime: a camera, a scripted student of known errors, and the filter's teacher (scripted
proposer + colour verifier), each its own module process. Every frame's fate is known in advance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status
from PIL import Image, ImageDraw
from support import TEST_MODULES, Machine, camera, connect, module
from viam.services.vision import VisionClient

RED, BLUE = (220, 30, 30), (30, 30, 220)
PERSON_A, PERSON_B = (20, 20, 80, 100), (120, 20, 180, 100)
RULES = [{"detect": "person", "question": "Glasses?", "label": "glasses", "negative_label": "no_glasses"}]
# frame: (people as (box, colour)), what the student says ([x0, y0, x1, y1, score, class]), and what must come of it
FRAMES: list[tuple[list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], list[list[Any]], str]] = [
    ([(PERSON_A, RED)], [[*PERSON_A, 0.9, "glasses"]], "saved"),  # sure and right
    ([(PERSON_A, RED), (PERSON_B, BLUE)], [[*PERSON_A, 0.9, "glasses"]], "saved"),  # sure, and misses one: unseen
    ([(PERSON_A, RED)], [[*PERSON_A, 0.5, "glasses"]], "agreed"),  # unsure, but right: the teacher confirms
    ([], [[*PERSON_B, 0.5, "glasses"]], "extra"),  # unsure ghost: kept as background
    ([(PERSON_B, BLUE)], [[*PERSON_B, 0.6, "glasses"]], "wrong_class"),  # unsure and wrong: kept, relabelled
]


def test_the_student_chooses_what_the_teacher_labels(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    teacher, student = {}, {}
    for i, (people, said, _) in enumerate(FRAMES):
        image = Image.new("RGB", (200, 120), (90 + 20 * i, 90, 90))
        draw = ImageDraw.Draw(image)
        for box, colour in people:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        image.save(frames / f"{i:03d}.jpg", quality=95)
        teacher[f"{i:03d}.jpg"] = [[*box, 0.9, "person"] for box, _ in people]
        student[f"{i:03d}.jpg"] = said
    (tmp_path / "teacher.json").write_text(json.dumps(teacher))
    (tmp_path / "student.json").write_text(json.dumps(student))

    def vision(name: str, model: str, **attributes: Any) -> dict[str, Any]:
        return {"name": name, "api": "rdk:service:vision", "model": model, "attributes": attributes}

    config = {
        "modules": [module("media-camera"), module("filter-stages", TEST_MODULES / "filter_stages"),
                    module("autolabel-filter")],
        "components": [camera("cam", source=str(frames), loop=False)],
        "services": [
            vision("proposer", "test:vision:scripted-proposer", frames=str(frames), boxes=str(tmp_path / "teacher.json")),
            vision("fast", "test:vision:scripted-proposer", frames=str(frames), boxes=str(tmp_path / "student.json")),
            vision("vlm", "test:vision:colour-verifier", batch="verify"),
            vision("labeler", "labelsieve:vision:autolabel-filter", detector="proposer", verifier="vlm", rules=RULES,
                   camera_name="cam", student="fast", teacher_sample_rate=0.0, novelty_window=0, duplicate_threshold=0),
        ],
    }

    async def session(address: str) -> tuple[list[Any], dict[str, Any], int]:
        robot = await connect(address)
        try:
            labeler = VisionClient.from_robot(robot, "labeler")
            outcomes: list[Any] = []
            for _ in FRAMES:
                try:
                    result = await labeler.capture_all_from_camera("cam", return_image=True, return_detections=True,
                                                                   extra={"fromDataManagement": True})
                except GRPCError as exc:
                    assert exc.status == Status.FAILED_PRECONDITION and "no capture from filter module" in exc.message
                    outcomes.append(None)
                else:
                    outcomes.append(result)
            stats = await labeler.do_command({"stats": {}})
            calls = await VisionClient.from_robot(robot, "proposer").do_command({"calls": {}})
            return outcomes, dict(stats["student"]), int(calls["calls"])
        finally:
            await robot.close()

    with Machine(config, tmp_path) as machine:
        outcomes, stats, teacher_calls = asyncio.run(session(machine.address))

    kept = {i: r for i, r in enumerate(outcomes) if r is not None}

    assert sorted(kept) == [3, 4]  # the disagreements; an agreement on an unsure frame teaches nothing new
    assert kept[3].detections == [] and kept[3].extra["frame"]["kind"] == ["extra"]
    assert [d.class_name for d in kept[4].detections] == ["no_glasses"]
    assert kept[4].extra["frame"]["kind"] == ["wrong_class"]
    assert kept[4].extra["frame"]["student_boxes"] == [[*map(float, PERSON_B), "glasses", 0.6]]
    assert kept[4].extra["provenance"][0]["answer"] == "no"
    assert teacher_calls == stats["teacher_calls"] == 3
    assert stats["teacher_calls_saved"] == 2
    assert stats["disagreements"] == {"missed": 0, "extra": 1, "wrong_class": 1}
    assert stats["teacher_reasons"]["unsure"] == 3
