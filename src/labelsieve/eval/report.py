"""The evaluation's report: `report.json` (every number), a self-contained `report.html` (plots and a gallery of
mistakes drawn on their frames, inlined as data URLs) and a summary table for the terminal."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import ImageDraw

from labelsieve import images
from labelsieve.dataset.frames import fillable
from labelsieve.errors import UnsupportedError
from labelsieve.eval.metrics import FrameRecord, confusion, judged, match, proposer_labels, score, student_report, sweep
from labelsieve.files import write_atomic
from labelsieve.filter import FilterConfig

__all__ = ["summarize", "summary_table", "write_report"]

PROPOSER_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
VERIFIER_THRESHOLDS = (0.0, 0.5, 0.7, 0.9)
GALLERY_LIMIT = 48  # per kind: enough to see a pattern, small enough to open
FP_COLOUR, MISS_COLOUR = (230, 40, 40), (250, 200, 0)


def _per_frame(value: float, frames: int) -> float:
    return value / frames if frames else 0.0


def summarize(records: Sequence[FrameRecord], config: FilterConfig, truth_classes: Sequence[str],
              student: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's numbers; `student` (the student model's identity) adds the student's section where the filter has
    one."""
    classes = [c for c in config.labels if c in truth_classes]
    alone = score(((proposer_labels(f, config), f.truth) for f in records), classes)
    both = score(((f.decision.detections, f.truth) for f in records), classes)
    floor = max(r.min_confidence for r in config.rules)
    n = len(records)
    kept = [f.decision for f in records if f.decision.kept]
    unresolved = [d for d in kept if len(d.ignore)]
    blocked = sum(not fillable(d.ignore, d.detections) for d in unresolved)
    outcomes: dict[str, int] = {}
    for f in records:
        outcomes[f.decision.outcome] = outcomes.get(f.decision.outcome, 0) + 1
    return {
        "frames": n,
        "classes": {c: {"proposer": alone[c].as_dict(), "two_stage": both[c].as_dict()} for c in classes},
        "not_judged": [c for c in config.labels if c not in truth_classes],
        "verifier_confusion": confusion(records, config),
        "cost": {"proposer_calls_per_frame": _per_frame(n, n),  # the gate is off: one proposal per frame
                 "proposer_seconds_per_frame": _per_frame(sum(f.propose_s for f in records), n),
                 "verifier_calls_per_frame": _per_frame(sum(f.crops for f in records), n),
                 "verifier_seconds_per_frame": _per_frame(sum(f.verify_s for f in records), n)},
        "outcomes": outcomes,
        "ignore_regions": {"frames_kept": len(kept), "frames_with_ignore_regions": len(unresolved),
                           "dropped_by_default": len(unresolved), "filled_with_fill_ignore": len(unresolved) - blocked,
                           "dropped_with_fill_ignore": blocked},
        "sweep": sweep(records, config, classes, sorted({*PROPOSER_THRESHOLDS, floor}), VERIFIER_THRESHOLDS),
        **({"student": {"service": config.student, "model": student, **student_report(records, config, truth_classes)}}
           if student is not None else {}),
    }


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def summary_table(report: dict[str, Any]) -> str:
    lines = [f"{'class':<20} {'proposer P':>10} {'proposer R':>10} {'2-stage P':>10} {'2-stage R':>10}"]
    for name, row in report["classes"].items():
        lines.append(f"{name:<20} {_fmt(row['proposer']['precision']):>10} {_fmt(row['proposer']['recall']):>10} "
                     f"{_fmt(row['two_stage']['precision']):>10} {_fmt(row['two_stage']['recall']):>10}")
    cost = report["cost"]
    lines.append(f"{report['frames']} frames; per frame: proposer {cost['proposer_calls_per_frame']:.2f} calls "
                 f"{cost['proposer_seconds_per_frame']:.3f} s, verifier {cost['verifier_calls_per_frame']:.2f} calls "
                 f"{cost['verifier_seconds_per_frame']:.3f} s")
    ignore = report["ignore_regions"]
    if ignore["frames_with_ignore_regions"]:
        lines.append(f"{ignore['frames_with_ignore_regions']} of {ignore['frames_kept']} kept frames have ignore regions "
                     f"(boxes left unresolved): dataset build drops them, or with --fill-ignore paints "
                     f"{ignore['filled_with_fill_ignore']} and drops {ignore['dropped_with_fill_ignore']}")
    if report["not_judged"]:
        lines.append(f"not in the truth's categories, so not judged: {', '.join(report['not_judged'])}")
    if student := report.get("student"):
        lines.append(f"student {student['service']} {student['model'].get('model_id') or ''}: disagrees with the teacher on "
                     f"{student['frames_disagreeing_with_teacher']['any']} of {student['frames']} frames")
        for name, row in student["against_truth"].items():
            teacher = student["against_teacher"].get(name, {})
            lines.append(f"  {name:<18} vs hand labels P {_fmt(row['precision'])} R {_fmt(row['recall'])}; vs teacher P "
                         f"{_fmt(teacher.get('precision'))} R {_fmt(teacher.get('recall'))}")
    return "\n".join(lines)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(report: dict[str, Any]) -> list[str]:
    try:
        import matplotlib
    except ImportError as exc:
        raise UnsupportedError("the report's plots need matplotlib: pip install 'labelsieve[eval]'") from exc
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    bars = Figure(figsize=(7, 3))
    ax = bars.subplots()
    names = list(report["classes"])
    for k, (stage, metric) in enumerate([(s, m) for s in ("proposer", "two_stage") for m in ("precision", "recall")]):
        ax.bar([i + k * 0.2 for i in range(len(names))], [report["classes"][c][stage][metric] or 0.0 for c in names],
               0.2, label=f"{stage} {metric}")
    ax.set_xticks([i + 0.3 for i in range(len(names))], names)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("per class")
    curve = Figure(figsize=(5, 4))
    ax = curve.subplots()
    for stage in ("proposer", "two_stage"):
        for c in sorted({r["verifier_confidence"] for r in report["sweep"]}) if stage == "two_stage" else [0.0]:
            points = [(r[stage]["recall"], r[stage]["precision"], r["min_confidence"]) for r in report["sweep"]
                      if r[stage] and r["verifier_confidence"] == c and r[stage]["precision"] is not None]
            if points:
                ax.plot([p[0] or 0.0 for p in points], [p[1] for p in points], marker="o",
                        label=stage if stage == "proposer" else f"two stage, verifier >= {c}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("min_confidence sweep (all judged classes)")
    return [_png(bars), _png(curve)]


def _drawn(record: FrameRecord, box: Sequence[float], caption: str, colour: tuple[int, int, int]) -> str:
    image = images.decode(record.path.read_bytes(), where=str(record.path))
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    x0, y0, x1, y1 = box
    for grow, ink in ((2 * width, (0, 0, 0)), (width, colour)):  # outside the box, dark-edged: visible on any colour
        draw.rectangle((x0 - grow, y0 - grow, x1 + grow, y1 + grow), outline=ink, width=width)
    left, top, right, bottom = draw.textbbox((x0, max(0, y0 - 2 * width - 12)), caption)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
    draw.text((left, top), caption, fill=colour)
    return images.data_url(image, max_side=320, quality=80)


def _gallery(records: Sequence[FrameRecord], classes: Sequence[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(false positives, misses) of the two stages: (data URL, caption) each."""
    mistakes: list[tuple[str, str]] = []
    misses: list[tuple[str, str]] = []
    for f in records:
        kept = judged(f.decision.detections, classes)
        hit, found = match(kept, f.truth)
        for (box, conf, label), h in zip(kept, hit):
            if not h and len(mistakes) < GALLERY_LIMIT:
                mistakes.append((_drawn(f, box.tolist(), f"{label} {conf:.2f}", FP_COLOUR), f"{f.path.name}: {label} {conf:.2f}"))
        for (box, _, label), h in zip(f.truth, found):
            if not h and label in classes and len(misses) < GALLERY_LIMIT:
                misses.append((_drawn(f, box.tolist(), f"missed {label}", MISS_COLOUR),
                               f"{f.path.name}: {label} ({f.decision.outcome})"))
    return mistakes, misses


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _html(report: dict[str, Any], title: str, plots: list[str], mistakes: list[tuple[str, str]],
          misses: list[tuple[str, str]]) -> str:
    per_class = _table(["class", "proposer P", "proposer R", "2-stage P", "2-stage R", "2-stage TP/FP/FN"], [
        [c, _fmt(r["proposer"]["precision"]), _fmt(r["proposer"]["recall"]), _fmt(r["two_stage"]["precision"]),
         _fmt(r["two_stage"]["recall"]), f"{r['two_stage']['tp']}/{r['two_stage']['fp']}/{r['two_stage']['fn']}"]
        for c, r in report["classes"].items()])
    conf = _table(["truth \\ verifier", "yes", "no", "unsure"],
                  [[row, *v.values()] for row, v in report["verifier_confusion"].items()])
    cost = _table(["measure", "per frame"], [[k, f"{v:.4g}"] for k, v in report["cost"].items()])
    sweep_rows = _table(["min_confidence", "verifier >=", "proposer P", "proposer R", "2-stage P", "2-stage R"], [
        [r["min_confidence"], r["verifier_confidence"], _fmt(r["proposer"]["precision"]), _fmt(r["proposer"]["recall"]),
         _fmt((r["two_stage"] or {}).get("precision")), _fmt((r["two_stage"] or {}).get("recall"))]
        for r in report["sweep"]])

    def gallery(items: list[tuple[str, str]]) -> str:
        return "".join(f'<figure><img src="{url}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}</figcaption>'
                       f"</figure>" for url, cap in items) or "<p>none</p>"

    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;
padding:3px 8px;text-align:right}} figure{{display:inline-block;margin:4px}} figcaption{{font-size:11px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{report['frames']} frames; outcomes {html.escape(json.dumps(report['outcomes']))};
a box is right at IoU &gt;= 0.5 with a truth box of its class.</p>
<h2>Precision and recall</h2>{per_class}{''.join(f'<img src="{p}" alt="plot">' for p in plots)}
<h2>Verifier on proposed boxes</h2>{conf}<h2>Cost</h2>{cost}<h2>Thresholds</h2>{sweep_rows}
<h2>False positives (kept, no matching truth)</h2>{gallery(mistakes)}
<h2>Misses (truth the filter did not label)</h2>{gallery(misses)}</body></html>"""


def write_report(report: dict[str, Any], records: Sequence[FrameRecord], out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mistakes, misses = _gallery(records, list(report["classes"]))
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    write_atomic(out / "report.html", _html(report, title, _plots(report), mistakes, misses))
