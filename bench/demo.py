"""`make demo`'s time by stage on this machine, with the tiny random-weight models (offline), as a user's first run takes it.

    python bench/demo.py [--frames 24] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # the tiny models: the real ones' cost is the grounding detector's and verifier's benches

from labelsieve.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        result = run_demo(Path(out) / "run", frames=args.frames, epochs=args.epochs)
    total = sum(result.seconds.values())
    print(f"labelsieve demo, {args.frames} frames, {args.epochs} epochs, tiny models, {os.cpu_count()} CPUs")
    for stage, seconds in result.seconds.items():
        print(f"  {stage:<18} {seconds:7.1f} s  {seconds / total:6.1%}")
    print(f"  {'total':<18} {total:7.1f} s")


if __name__ == "__main__":
    main()
