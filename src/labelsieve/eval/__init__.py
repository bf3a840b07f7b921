"""Label quality of an auto-label filter against a small hand-labelled sample (COCO JSON):

    report = asyncio.run(evaluate(Path("machine.json"), "labeler", Path("truth.json"), Path("eval-out")))
    report["classes"]["glasses"]["two_stage"]["precision"]

Per class precision and recall for the proposer alone and with the verifier, the verifier's confusion, the cost per frame
and a threshold sweep, written to `out/report.json` and a self-contained `out/report.html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labelsieve.eval.metrics import FrameRecord, Score
from labelsieve.eval.report import summarize, summary_table, write_report
from labelsieve.eval.truth import Truth, load_coco
from labelsieve.paths import home

__all__ = ["FrameRecord", "Score", "Truth", "evaluate", "load_coco", "summarize", "summary_table", "write_report"]


async def evaluate(config_path: Path, name: str, coco_path: Path, out: Path, *, images_dir: Path | None = None,
                   data_dir: Path | None = None) -> dict[str, Any]:
    """Run the machine's filter `name` over the truth images and write the report; returns what report.json holds.
    `data_dir` is the runtime's (VIAM_HOME for modules), `labelsieve.paths.home()` by default."""
    from labelsieve.eval.stages import filter_config, record_frames  # the viam-facing half, imported only to run

    truth = load_coco(coco_path, images_dir)
    config = filter_config(config_path, name)
    records, student = await record_frames(config_path, name, truth, data_dir or home())
    report = summarize(records, config, truth.classes, student)
    write_report(report, records, Path(out), f"labelsieve eval: {name} against {Path(coco_path).name}")
    return report
