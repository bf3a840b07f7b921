"""The main job end to end, as a user would run it: frames -> grounding detector + VLM verifier behind the auto-label
filter -> data capture and sync -> a dataset version -> a trained fast detector -> deployed live -> answering through the
runtime -> a second round in which the deployed detector is the filter's student and chooses what the slow models label.
`labelsieve demo` (and `make demo`) runs it and prints where every output is.

It uses the real default models (Grounding DINO tiny, SmolVLM-256M), downloaded once into the Hugging Face cache with
progress. With no network and no cache it says so loudly and builds tiny random-weight models instead, so the mechanics
still run end to end; its labels are then meaningless, and the summary says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import ImageOps

from labelsieve import images
from labelsieve.files import write_atomic
from labelsieve.shipped import module_entry, sample_picture
from labelsieve.train.offline import ultralytics_offline

__all__ = ["DemoResult", "run_demo"]

log = logging.getLogger("labelsieve.demo")

DETECTOR, VERIFIER = "IDEA-Research/grounding-dino-tiny", "HuggingFaceTB/SmolVLM-256M-Instruct"
RULE = {"detect": "person", "question": "Is this person wearing glasses on their face?", "label": "glasses",
        "negative_label": "no_glasses"}


@dataclass(frozen=True)
class DemoResult:
    out: Path
    real_models: bool
    filter_stats: dict[str, Any]
    dataset: dict[str, Any]
    model_dir: Path
    metrics: dict[str, Any]
    fast_detections: int
    student_stats: dict[str, Any]
    seconds: dict[str, float]


def _sample_frames(folder: Path, count: int) -> Path:
    """People pictures that ship with installed packages, varied by crop, scale and mirror so the near-duplicate gate
    lets them through and the dataset has more than a handful of frames."""
    sources = [sample_picture()]
    ultralytics_offline()  # before ultralytics' first import, which reads its settings (training later reuses them)
    try:
        from ultralytics.utils import ASSETS

        sources += [ASSETS / "zidane.jpg", ASSETS / "bus.jpg"]
    except ImportError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    decoded = [images.decode(source.read_bytes(), where=str(source)) for source in sources]
    for i in range(count):
        image = decoded[i % len(decoded)]
        w, h = image.size
        keep = 1.0 - 0.05 * (i // len(sources) % 5)  # 100% .. 80% of the frame
        x0, y0 = int((w - w * keep) * ((i * 37) % 11) / 10), int((h - h * keep) * ((i * 53) % 7) / 6)
        frame = image.crop((x0, y0, x0 + int(w * keep), y0 + int(h * keep)))
        frame = ImageOps.mirror(frame) if (i // len(sources)) % 2 else frame
        images.fit(frame, 640).save(folder / f"{i:03d}.jpg", quality=90)
    return folder


def _cached(repo: str) -> str | None:
    """The local snapshot of `repo`, downloading it (with progress) when the network allows; None when neither works."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, local_files_only=True)
    except Exception:  # noqa: BLE001  (not cached: any of huggingface_hub's errors means the same here)
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    try:
        log.info("downloading %s into the Hugging Face cache (once)", repo)
        return snapshot_download(repo, etag_timeout=10)
    except Exception as exc:  # noqa: BLE001  (no network, a proxy, a gated repo: the demo goes on with tiny models)
        log.warning("could not download %s: %s", repo, exc)
        return None


def _models(out: Path) -> tuple[str, str, bool]:
    detector, verifier = _cached(DETECTOR), _cached(VERIFIER)
    if detector and verifier:
        return detector, verifier, True
    from labelsieve.demo.tiny_models import build_grounding_dino
    from labelsieve.demo.tiny_vlms import build_idefics3

    log.warning("NO NETWORK AND NO CACHED WEIGHTS\n%s\nfor %s and %s: the demo runs on TINY RANDOM-WEIGHT models, so the "
                "pipeline runs end to end but its LABELS ARE MEANINGLESS. On a connected machine the real models are "
                "downloaded once into the Hugging Face cache.\n%s", "=" * 100, DETECTOR, VERIFIER, "=" * 100)
    tiny = out / "tiny-models"
    return (str(build_grounding_dino(tiny / "grounding-dino")), str(build_idefics3(tiny / "smolvlm")), False)


def _config(out: Path, frames: Path, detector: str, verifier: str, real: bool) -> dict[str, Any]:
    # Tiny random models: every box is kept and the verifier decides almost every crop, so mechanics always run.
    detector_attrs = {} if real else {"box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 3}
    verifier_attrs = {} if real else {"yes_threshold": 0.5001, "no_threshold": 0.4999}
    return {
        "modules": [module_entry(m) for m in ("media_camera", "grounding_detector", "vlm_verifier", "autolabel_filter",
                                        "fast_detector")],
        "components": [{"name": "cam", "api": "rdk:component:camera", "model": "labelsieve:camera:media",
                        "attributes": {"source": str(frames), "loop": False}}],
        "services": [
            {"name": "proposer", "api": "rdk:service:vision", "model": "labelsieve:vision:grounding-detector",
             "attributes": {"model": detector, "classes": ["person"], **detector_attrs}},
            {"name": "verifier", "api": "rdk:service:vision", "model": "labelsieve:vision:vlm-verifier",
             "attributes": {"backend": "transformers", "model": verifier, "imgsz": 256 if real else 64,
                            **verifier_attrs}},
            {"name": "labeler", "api": "rdk:service:vision", "model": "labelsieve:vision:autolabel-filter",
             "attributes": {"camera_name": "cam", "detector": "proposer", "verifier": "verifier", "rules": [
                 {**RULE, "min_confidence": 0.3 if real else 0.0}], "detector_timeout": 300, "verifier_timeout": 300},
             "service_configs": [{"type": "data_manager", "attributes": {"capture_methods": [
                 {"method": "CaptureAllFromCamera", "capture_frequency_hz": 4,
                  "additional_params": {"camera_name": "cam", "min_confidence_score": "0"}}]}}]},
            {"name": "data_manager", "api": "rdk:service:data_manager", "model": "rdk:builtin:builtin",
             "attributes": {"capture_dir": str(out / "capture"), "sync_url": str(out / "synced"),
                            "sync_interval_mins": 60, "tags": ["demo"]}},
        ],
    }


async def _capture(config_path: Path, out: Path, timeout: float) -> tuple[Any, dict[str, Any]]:
    """Start the runtime and wait until the camera has played every frame through the filter; then sync."""
    from viam.services.vision import VisionClient

    from labelsieve.runtime import Runtime, RuntimeOptions
    from labelsieve.runtime.builtins.data_manager import DataManagerService

    runtime = Runtime(RuntimeOptions(config_path, port=0, data_dir=out / "home"))
    await runtime.start()
    watcher = asyncio.create_task(runtime.run_until(asyncio.Event()))
    robot: Any = await runtime.connect()  # the SDK's client is untyped
    try:
        manager = DataManagerService.from_robot(robot, "data_manager")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply: dict[str, Any] = dict(await manager.do_command({"stats": {}}))
            stats = reply["methods"]["rdk:service:vision/labeler/CaptureAllFromCamera"]
            if stats.get("ended"):  # the camera played its last frame
                break
            await asyncio.sleep(0.25)
        else:
            log.warning("capture did not finish within %.0f s; going on with what was captured", timeout)
        await manager.sync()
        answer: dict[str, Any] = dict(await VisionClient.from_robot(robot, "labeler").do_command({"stats": {}}))
        filter_stats: dict[str, Any] = answer["stats"]
    finally:
        await robot.close()
    return (runtime, watcher), filter_stats


async def _deploy_and_ask(runtime: Any, config_path: Path, model_dir: Path, frame: Path) -> int:
    """Deploy the trained model to the running machine (a config edit it applies live) and ask it through the runtime."""
    from viam.media.video import CameraMimeType, ViamImage
    from viam.services.vision import VisionClient

    from labelsieve.train.deploy import deploy_to_config

    deploy_to_config(model_dir, config_path, "fast", create=True)
    robot: Any = await runtime.connect()
    try:
        for _ in range(120):
            try:
                fast = VisionClient.from_robot(robot, "fast")
                return len(await fast.get_detections(ViamImage(frame.read_bytes(), CameraMimeType.JPEG)))
            except Exception:  # noqa: BLE001  (not added yet: the runtime applies the edit within a second or two)
                await asyncio.sleep(1)
                await robot.refresh()
        raise TimeoutError("the deployed fast detector did not answer within 2 minutes")
    finally:
        await robot.close()


async def _second_round(runtime: Any, config_path: Path, frames: Path, timeout: float) -> dict[str, Any]:
    """The deployed fast detector becomes the filter's student and the frames play again: the teacher (proposer and
    verifier) runs only where the student is unsure, sees something new, or on a sampled share; capture stores the
    disagreements and the sampled agreements. A config edit the runtime applies live, as a user would make it."""
    from viam.services.vision import VisionClient

    from labelsieve.runtime.builtins.data_manager import DataManagerService

    replay = frames.with_name(f"{frames.name}-round2")  # a new source: the camera starts again from its first frame
    shutil.copytree(frames, replay, dirs_exist_ok=True)
    config = json.loads(config_path.read_text())
    next(c for c in config["components"] if c["name"] == "cam")["attributes"]["source"] = str(replay)
    labeler = next(s for s in config["services"] if s["name"] == "labeler")
    labeler["attributes"].update(student="fast", teacher_sample_rate=0.25)
    labeler["service_configs"][0]["attributes"]["capture_methods"][0]["capture_frequency_hz"] = 3  # a new collector
    write_atomic(config_path, json.dumps(config, indent=2))
    played = len(list(replay.iterdir()))
    robot: Any = await runtime.connect()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stats: dict[str, Any] = dict(await VisionClient.from_robot(robot, "labeler").do_command({"stats": {}}))
                manager: dict[str, Any] = dict(
                    await DataManagerService.from_robot(robot, "data_manager").do_command({"stats": {}}))
            except Exception:  # noqa: BLE001  (the edit being applied: resources are re-added within a second or two)
                await robot.refresh()
                stats, manager = {}, {}
            student = stats.get("student") or {}
            method = manager.get("methods", {}).get("rdk:service:vision/labeler/CaptureAllFromCamera", {})
            if student.get("frames", 0) >= played or (student and method.get("ended")):
                await DataManagerService.from_robot(robot, "data_manager").sync()
                return student
            await asyncio.sleep(0.25)
        log.warning("the second round did not finish within %.0f s; its counts so far are shown", timeout)
        return student
    finally:
        await robot.close()


def run_demo(out: Path, *, frames: int = 24, epochs: int = 5, imgsz: int = 320, timeout: float = 1800) -> DemoResult:
    out = out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal started
        seconds[stage] = round(time.monotonic() - started, 1)
        started = time.monotonic()

    frame_dir = _sample_frames(out / "frames", frames)
    detector, verifier, real = _models(out)
    config_path = out / "machine.json"
    write_atomic(config_path, json.dumps(_config(out, frame_dir, detector, verifier, real), indent=2))
    lap("prepare")

    async def main() -> DemoResult:
        (runtime, watcher), filter_stats = await _capture(config_path, out, timeout)
        try:
            lap("capture and sync")
            from labelsieve.dataset import build_dataset
            from labelsieve.train.trainer import load_model_info, train

            built = await asyncio.to_thread(build_dataset, [str(out / "synced")], out / "dataset", progress=False)
            lap("dataset")
            model_dir = await asyncio.to_thread(train, built.version.path, epochs=epochs, imgsz=imgsz, batch=8,
                                                workers=0, out=out / "models", command="labelsieve demo")
            lap("train")
            answered = await _deploy_and_ask(runtime, config_path, model_dir, min(frame_dir.iterdir()))
            lap("deploy and ask")
            student = await _second_round(runtime, config_path, frame_dir, timeout)
            lap("second round, the student choosing")
            return DemoResult(out, real, filter_stats, built.summary, model_dir,
                              load_model_info(model_dir).get("metrics", {}), answered, student, seconds)
        finally:
            watcher.cancel()
            await runtime.shutdown()

    return asyncio.run(main())


def _student_line(student: dict[str, Any]) -> str:
    if not student:
        return "  second round: the student never answered (see the log)"
    n = {k: int(v) for k, v in student.items() if isinstance(v, (int, float))}
    kinds = {k: int(v) for k, v in (student.get("disagreements") or {}).items()}
    return (f"  second round, the deployed detector as the student: {n.get('frames')} frames, teacher calls "
            f"{n.get('teacher_calls')} ({n.get('teacher_calls_saved')} saved), disagreements captured {kinds} "
            f"in {n.get('frames_disagreed')} frame(s), sampled agreements kept {n.get('agreements_kept')}")


def summary(result: DemoResult) -> str:
    s = {k: int(v) for k, v in result.filter_stats.items()}  # counters arrive as floats through a protobuf Struct
    d = result.dataset
    lines = [
        "labelsieve demo: done" + ("" if result.real_models else "  (TINY RANDOM MODELS: THE LABELS ARE MEANINGLESS)"),
        (f"  frames seen {s.get('frames_seen')}, skipped as duplicates {s.get('duplicates_skipped')}, kept "
        f"{s.get('frames_kept')}; verdicts yes {s.get('verified_yes')} / no {s.get('verified_no')} / unsure "
        f"{s.get('verified_unsure')}"),
        f"  labels by class: {d.get('boxes_per_class')}; split {d.get('split')}",
        f"  model metrics (held-out): {result.metrics}",
        f"  the deployed fast detector answered through the runtime with {result.fast_detections} box(es)",
        _student_line(result.student_stats),
        f"  seconds by stage: {result.seconds}",
        (f"  outputs: config {result.out / 'machine.json'}, captures {result.out / 'synced'}, dataset "
        f"{result.out / 'dataset'}, model {result.model_dir}"),
    ]
    return "\n".join(lines)
