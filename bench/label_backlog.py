"""`labelsieve label` on a backlog, with stand-in stages of fixed cost (tests/support/oracle.py): a proposer taking
300 ms a frame and a verifier taking 200 ms a call (a frame's crops in one call), 0 to 4 boxes a frame.

    .venv/bin/python bench/label_backlog.py [--frames 40] [--no-ray]

(a) In process: frames/s against the slowest stage's rate (1 / 300 ms = 3.3 frames/s; the live filter, its stages in
    series, does about 1 / (300 + 200 x share of frames with boxes) ms). Goal >= 0.9 of the slowest stage.
(b) `--ray` on a local cluster (2 CPUs, this machine), one proposer and one verifier actor, against in process. Goal >= 0.8.
(c) Ray with 1 -> 2 proposer and verifier actors; the stand-ins sleep, so a second worker adds a stage's worth of
    capacity without a CPU. Goal >= 1.7x.

Rates are this run's pace (first to last frame finished: `summary["this_run"]["frames_per_s"]`); the wall time with
start-up (Ray starts its actors per job) is printed beside it. No GPU was used: the stand-ins cost the same anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ["LABELSIEVE_LABEL_STAGES"] = "support.oracle"
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])

from support.oracle import oracle_config, scene, write_frames

from labelsieve.label import label

PROPOSER_S, VERIFIER_S = 0.3, 0.2


def run(frames: Path, config: Path, out: Path, **options: Any) -> dict[str, Any]:
    summary = label([str(frames)], config, "labeler", str(out), data_dir=out.parent / "home", progress=False, **options)
    assert summary["seen"] == summary["this_run"]["frames"] and not summary["failures"], summary
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--no-ray", action="store_true", help="only (a)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        layouts = scene(args.frames, seed=0)
        write_frames(root / "frames", layouts)
        with_boxes = sum(any(layout) for layout in layouts) / len(layouts)
        counts = [sum(answer is not None for answer in layout) for layout in layouts]
        config = oracle_config(root / "machine.json", delay_propose=PROPOSER_S, delay_verify=VERIFIER_S)
        limit, serial = 1 / PROPOSER_S, 1 / (PROPOSER_S + VERIFIER_S * with_boxes)
        rows = []

        local = run(root / "frames", config, root / "local")["this_run"]
        rows.append(("(a) in process", local, local["frames_per_s"] / limit, "slowest stage (3.3/s)", 0.9))
        if not args.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
            try:
                one = run(root / "frames", config, root / "ray1", ray="auto", proposers=1, verifiers=1,
                          actor_cpus=0.5)["this_run"]
                two = run(root / "frames", config, root / "ray2", ray="auto", proposers=2, verifiers=2,
                          actor_cpus=0.5)["this_run"]
            finally:
                ray.shutdown()
            rows.append(("(b) --ray, 1 worker", one, one["frames_per_s"] / local["frames_per_s"], "in process", 0.8))
            rows.append(("(c) --ray, 2 workers", two, two["frames_per_s"] / one["frames_per_s"], "1 worker", 1.7))

        print(f"{args.frames} frames, {min(counts)} to {max(counts)} boxes a frame ({with_boxes:.0%} with any); proposer {PROPOSER_S * 1000:.0f} ms/frame, verifier "
              f"{VERIFIER_S * 1000:.0f} ms/call; stages in series would do {serial:.2f} frames/s, the slowest stage "
              f"allows {limit:.2f}")
        print(f"{'run':<22}{'frames/s':>10}{'wall s':>9}{'ratio':>8}  {'against':<22}{'goal':>6}")
        for name, pace, ratio, against, goal in rows:
            print(f"{name:<22}{pace['frames_per_s']:>10.2f}{pace['wall_s']:>9.1f}{ratio:>8.2f}  {against:<22}"
                  f"{'>=' + str(goal):>6} {'ok' if ratio >= goal else 'MISSED'}")


if __name__ == "__main__":
    main()
