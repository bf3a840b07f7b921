"""Train a YOLO on a dataset version and write a versioned model directory. ultralytics is imported here only, lazily,
through `yolo_class()` (offline), so nothing in a training run reaches the network.

A model directory (`models/v3`) holds:

| file | what |
| --- | --- |
| `model.pt` | the best weights (ultralytics checkpoint, class names inside) |
| `model.onnx` | the same weights exported for onnxruntime (class names in its metadata) |
| `model.json` | model id, class list, dataset version (id, name, path), held-out metrics, the exact command, settings |
| `plots/` | ultralytics' plots and `results.csv` |
| `train.log` | ultralytics' full output (training, validation, export), without colours |
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from labelsieve.dataset import DatasetVersion, open_dataset
from labelsieve.errors import InputError, ModelError
from labelsieve.fleet import MODEL_INFO
from labelsieve.train.offline import yolo_class
from labelsieve.versions import locked, next_version

__all__ = ["evaluate", "held_out_score", "load_model_info", "train"]

log = logging.getLogger(__name__)

SCORE = "mAP50-95"  # the held-out number promotion compares
_METRICS = {"metrics/mAP50-95(B)": "mAP50-95", "metrics/mAP50(B)": "mAP50", "metrics/precision(B)": "precision",
            "metrics/recall(B)": "recall"}


def load_model_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MODEL_INFO
    if not path.is_file():
        raise InputError(f"{model_dir}: not a labelsieve model directory (no {MODEL_INFO}); "
                         "train one with `labelsieve train`")
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def _metrics(results: Any) -> dict[str, float]:
    values = getattr(results, "results_dict", results) or {}
    return {short: round(float(values[key]), 5) for key, short in _METRICS.items() if key in values}


def training_device(device: str | None) -> str:
    """`auto` (or None) -> the first GPU if torch sees one, else the CPU; `cuda` -> every GPU; `0` / `0,1` -> those GPUs.
    An impossible choice is an InputError now, before anything is written, not a traceback from inside ultralytics."""
    import torch

    count = torch.cuda.device_count()
    choice = (device or "auto").strip().lower().removeprefix("cuda:")
    if choice == "auto":
        return "0" if count else "cpu"
    if choice == "cpu":
        return "cpu"
    wanted = list(range(count)) if choice == "cuda" else [int(i) for i in choice.split(",") if i.strip().isdigit()]
    if choice != "cuda" and len(wanted) != len(choice.split(",")):
        raise InputError(f"--device {device}: expected auto, cpu, cuda, or GPU numbers such as 0 or 0,1")
    if not count or not wanted or max(wanted) >= count:
        seen = f"torch sees {count} CUDA GPU{'s' if count != 1 else ''}" + (f" (0-{count - 1})" if count else "")
        raise InputError(f"--device {device}: {seen}; use --device cpu, or auto (a GPU when there is one)")
    return ",".join(map(str, wanted))


class _Plain(io.TextIOBase):
    """ultralytics colours its lines and redraws its bars whether or not they reach a terminal; the log gets them plain."""

    _CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(self._CODES.sub("", text).replace("\r", "\n"))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


@contextlib.contextmanager
def _ultralytics_output_to(log_file: Path) -> Iterator[TextIO]:
    """Send ultralytics' logger and anything printed (its own bars, torch's notes) to `log_file`; yields the terminal's
    stderr for labelsieve's own progress bar."""
    terminal = sys.stderr
    logger = logging.getLogger("ultralytics")
    saved = logger.handlers[:]
    with open(log_file, "a", encoding="utf-8") as file:
        plain = _Plain(file)
        logger.handlers = [logging.StreamHandler(plain)]
        try:
            with contextlib.redirect_stdout(plain), contextlib.redirect_stderr(plain):
                yield terminal
        finally:
            logger.handlers = saved


def _progress(yolo: Any, epochs: int, terminal: TextIO) -> tqdm:
    """One bar over the epochs, its postfix the latest held-out numbers."""
    bar = tqdm(total=epochs, desc="train", unit="epoch", file=terminal, dynamic_ncols=True)

    def epoch_done(trainer: Any) -> None:  # also called by the closing validation, for the same epoch
        bar.set_postfix(_metrics(trainer.metrics), refresh=False)
        bar.update(min(trainer.epoch + 1, epochs) - bar.n)

    yolo.add_callback("on_fit_epoch_end", epoch_done)
    return bar


def train(dataset: str | Path, *, model: str = "yolo11n.yaml", epochs: int = 100, imgsz: int = 640,
          device: str | None = "auto", batch: int = 16, workers: int = 8, seed: int = 0, out: Path = Path("models"),
          command: str = "") -> Path:
    """Train `model` (an architecture yaml from scratch, or a `.pt` to fine-tune) on `dataset` (a version folder, a
    dataset root for its latest version, or a URL of either); returns the new model directory under `out`."""
    device = training_device(device)
    version = open_dataset(dataset)

    made_out = not out.exists()
    staging = out / f".training-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = False
    try:
        with _ultralytics_output_to(staging / "train.log") as terminal:  # its import prints too
            YOLO = yolo_class()
            try:
                yolo = YOLO(model)
            except OSError as exc:  # ultralytics tries to download a .pt it cannot find
                raise ModelError(f"cannot load --model {model}: {exc}; training runs offline, so give a local .pt file "
                                 "or an architecture yaml such as yolo11n.yaml (from scratch)") from exc
            started = True
            with _progress(yolo, epochs, terminal):
                results = yolo.train(data=str(version.data_yaml), epochs=epochs, imgsz=imgsz, device=device,
                                     batch=batch, workers=workers, seed=seed, deterministic=True,
                                     project=str(staging.resolve()), name="run", exist_ok=True, plots=True,
                                     verbose=False, amp=False)  # the AMP check downloads a model; offline it would hang
            best = staging / "run" / "weights" / "best.pt"
            if not best.is_file():
                raise ModelError(f"training on {version.path} wrote no weights (see {out / 'train.log'})")
            shutil.copyfile(best, staging / "model.pt")
            exported = YOLO(str(staging / "model.pt")).export(format="onnx", imgsz=imgsz, simplify=True, device="cpu")
        run = staging / "run"
        if Path(exported).resolve() != (staging / "model.onnx").resolve():
            shutil.move(exported, staging / "model.onnx")
        (staging / "plots").mkdir()
        for item in run.iterdir():
            if item.is_file():
                shutil.move(item, staging / "plots" / item.name)
        shutil.rmtree(run)
        return _finish(staging, out, version, _metrics(results), command=command, model=model, epochs=epochs,
                       imgsz=imgsz, device=device, batch=batch, seed=seed)
    except BaseException:
        if started:  # a failed training's log outlives its staging folder
            shutil.move(staging / "train.log", out / "train.log")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made_out and not any(out.iterdir()):
            out.rmdir()


def _finish(staging: Path, out: Path, version: DatasetVersion, metrics: dict[str, float], **settings: Any) -> Path:
    weights = hashlib.sha256((staging / "model.onnx").read_bytes()).hexdigest()
    info = {
        "id": weights[:16], "classes": list(version.classes), "metrics": metrics, "score": SCORE,
        "dataset": {"id": version.id, "name": version.name, "path": str(version.path.resolve())},
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **settings,
    }
    (staging / MODEL_INFO).write_text(json.dumps(info, indent=2))
    with locked(out):
        final = next_version(out)
        os.rename(staging, final)
    return final


def evaluate(weights: Path, version: DatasetVersion, imgsz: int, device: str | None = None) -> dict[str, float]:
    """Held-out metrics of `weights` on `version`'s val split, with the same validator training used."""
    results = yolo_class()(str(weights)).val(data=str(version.data_yaml), imgsz=imgsz, device=device, split="val", plots=False,
                                     verbose=False, workers=0)
    return _metrics(results)


def held_out_score(model_dir: Path, version: DatasetVersion) -> float:
    """`SCORE` of a model directory on `version`'s val split, for the model it serves (its int8 model when it has one):
    the recorded number when it was trained on exactly that version, else a fresh evaluation."""
    info = load_model_info(model_dir)
    int8 = info.get("int8")
    metrics = int8["metrics"] if int8 else info["metrics"]
    if info["dataset"]["id"] == version.id and SCORE in metrics:
        return float(metrics[SCORE])
    served = model_dir / (int8["file"] if int8 else "model.pt")
    return evaluate(served, version, int(info.get("imgsz", 640)))[SCORE]
