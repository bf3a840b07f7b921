"""The review page with 10,000 boxes, in Debian's headless Chromium through Playwright, side by side with the goals:

    first paint     performance's first-contentful-paint, and the time from navigation to the first box drawn over
                    its loaded image (cold browser context each load)                                  goal <= 1 s
    action p95      a key press (accept / reject / relabel) to the decision on disk (fdatasync) and marked on the page,
                    as the page measures it; the next box is shown at once, before that: key to next box
                    shown is measured with n/p, from Python, Playwright's round trip included           goal <= 50 ms
    first grid      navigation (`#grid`, cold context) to the first page of crops drawn with its images   goal <= 1 s
    next grid p95   a key press (`a`: accept the page) to the first frame showing the next page's crops, as the
                    page measures it (key event to requestAnimationFrame after the crops are drawn), and
                    from Python, Playwright's round trip included; each key once the page has fetched the
                    next page's frames, as it does while a reviewer looks at a page                       goal <= 100 ms

Usage: python bench/review_page.py [--boxes 10000] [--loads 5] [--actions 300] [--grids 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright
from viam.proto.app.data import Annotations, BoundingBox
from viam.proto.app.datasync import DataCaptureMetadata, SensorData, SensorMetadata

from labelsieve.capture.format import capture_dir_for, encode_provenance, write_capture
from labelsieve.dataset import build_dataset, open_dataset
from labelsieve.review import Review, ReviewServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.media import encode

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PER_IMAGE = 20
CLASSES = ("person", "cup", "glasses", "phone")


def write_captures(folder: Path, boxes: int) -> None:
    """`boxes` boxes, PER_IMAGE to a 320x240 frame, random agreement and a few "unsure" verdicts."""
    rng = np.random.default_rng(0)
    out = capture_dir_for(folder, "rdk:service:vision", "labeler", "CaptureAllFromCamera")
    header = DataCaptureMetadata(component_type="rdk:service:vision", component_name="labeler",
                                 method_name="CaptureAllFromCamera", type=1, mime_type="image/jpeg")
    for n in range((boxes + PER_IMAGE - 1) // PER_IMAGE):
        image = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((320, 240))
        draw, bboxes = ImageDraw.Draw(image), []
        for _ in range(min(PER_IMAGE, boxes - n * PER_IMAGE)):
            x0, y0 = rng.uniform(0, 0.8, 2)
            x1, y1 = x0 + rng.uniform(0.05, 0.2), y0 + rng.uniform(0.05, 0.2)
            draw.rectangle((x0 * 320, y0 * 240, x1 * 320, y1 * 240), outline=tuple(int(v) for v in rng.integers(0, 256, 3)))
            agreement = float(rng.uniform(0.3, 1.0))
            bboxes.append(BoundingBox(label=str(rng.choice(CLASSES)), x_min_normalized=x0, y_min_normalized=y0,
                                      x_max_normalized=x1, y_max_normalized=y1, confidence=agreement,
                                      id=encode_provenance({"answer": "unsure" if agreement < 0.32 else "yes",
                                                            "agreement": agreement, "verifier_confidence": agreement})))
        meta = SensorMetadata(time_requested=Timestamp(seconds=1_700_000_000 + n * 60),
                              annotations=Annotations(bboxes=bboxes))
        write_capture(out, header, [SensorData(metadata=meta, binary=encode(image, quality=85))], name=f"frame{n:05d}")


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--boxes", type=int, default=10_000)
    args.add_argument("--loads", type=int, default=5)
    args.add_argument("--actions", type=int, default=300)
    args.add_argument("--grids", type=int, default=40, help="grid pages accepted with `a`")
    args.add_argument("--chromium", default="/usr/bin/chromium")
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_captures(Path(tmp) / "capture", opts.boxes)
        build_dataset([str(Path(tmp) / "capture")], Path(tmp) / "ds", progress=False)
        review = Review(open_dataset(Path(tmp) / "ds"))
        print(f"dataset: {len(review.rows)} boxes in {len({r['image'] for r in review.rows})} images "
              f"(built in {time.perf_counter() - start:.1f} s)")
        server = ReviewServer(review)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        first_drawn, fcp, actions, moves, first_grid, next_grid = [], [], [], [], [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=opts.chromium, args=CHROMIUM_ARGS)
            for _ in range(opts.loads):
                context = browser.new_context()
                page = context.new_page()
                begin = time.perf_counter()
                page.goto(server.url)
                page.wait_for_function("document.body.dataset.at !== undefined && "
                                       "document.getElementById('image').complete && "
                                       "document.getElementById('image').naturalWidth > 0", polling="raf")
                first_drawn.append((time.perf_counter() - begin) * 1000)
                page.wait_for_selector("body[data-loaded]")
                fcp.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN"))
                context.close()
            for _ in range(opts.loads):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                begin = time.perf_counter()
                page.goto(server.url + "#grid")
                page.wait_for_selector("body[data-grid-ready]", state="attached")
                first_grid.append((time.perf_counter() - begin) * 1000)
                context.close()
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_selector("body[data-loaded]")
            other_class = "String(1 + (review.classes.indexOf(now(current()).cls) + 1) % review.classes.length)"
            for n in range(opts.actions):  # accept, reject, relabel (to a class the box does not have)
                page.keyboard.press(["a", "r"][n % 3] if n % 3 < 2 else page.evaluate(other_class))
                page.wait_for_selector(f"body[data-decided='{n + 1}']", state="attached")
            actions = page.evaluate("window.review.actions")
            for n in range(opts.actions):
                begin = time.perf_counter()
                key = "p" if n % 2 else "n"
                page.keyboard.press(key)
                page.wait_for_function(f"document.body.dataset.at === '{opts.actions + (0 if n % 2 else 1)}'",
                                       polling="raf")
                moves.append((time.perf_counter() - begin) * 1000)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(server.url + "#grid")
            page.wait_for_selector("body[data-loaded]", state="attached")
            page.wait_for_selector("body[data-grid-ready='0']", state="attached")
            pages = page.evaluate("Math.ceil(window.review.queue.length / PER_PAGE())")
            for n in range(1, min(opts.grids, pages - 1) + 1):
                # a reviewer looks at a page before the key: by then the next page's frames are fetched and decoded
                page.wait_for_selector(f"body[data-prefetched='{n - 1}']", state="attached")
                begin = time.perf_counter()
                page.keyboard.press("a")
                page.wait_for_function(f"document.body.dataset.gridReady === '{n}'", polling="raf")
                next_grid.append((time.perf_counter() - begin) * 1000)
            in_page = page.evaluate("window.review.gridMoves")
            browser.close()
        server.shutdown()
        rows = [("first contentful paint (ms, median)", statistics.median(fcp), 1000.0),
                ("first box drawn (ms, median)", statistics.median(first_drawn), 1000.0),
                ("first box drawn (ms, worst)", max(first_drawn), 1000.0),
                ("decision persisted p50 (ms)", p(actions, 50), 50.0),
                ("decision persisted p95 (ms)", p(actions, 95), 50.0),
                ("key to next box shown p95 (ms, incl. Playwright)", p(moves, 95), 50.0),
                ("first grid of crops drawn (ms, median)", statistics.median(first_grid), 1000.0),
                ("first grid of crops drawn (ms, worst)", max(first_grid), 1000.0),
                (f"key to next grid's frame p95 (ms, in page, {len(in_page)} pages)", p(in_page, 95), 100.0),
                ("key to next grid drawn p95 (ms, incl. Playwright)", p(next_grid, 95), 100.0)]
        print(f"{'metric':54} {'measured':>9} {'goal':>7} {'ratio':>6}")
        for name, value, goal in rows:
            print(f"{name:54} {value:9.1f} {goal:7.0f} {value / goal:6.2f}")


if __name__ == "__main__":
    main()
