"""`labelsieve review`: the decisions log, the HTTP API, and the page driven by the keyboard in a real headless Chromium
(Debian's, through Playwright), down to the next dataset version's labels and manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.scenes import write_scenes

from labelsieve.dataset import build_dataset, open_dataset, versions
from labelsieve.errors import InputError
from labelsieve.review import Review, ReviewServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _dataset(root: Path) -> Path:
    """A built v1 whose manifest gives each box a different agreement and one box an "unsure" verdict."""
    write_scenes(root / "capture", range(8), classes=("red", "blue", "not_red"))
    version = build_dataset([str(root / "capture")], root / "ds", progress=False).version
    manifest = version.path / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["provenance"]["agreement"] = round(0.99 - 0.03 * ((i * 7) % len(rows)), 3)
    rows[-1]["provenance"]["answer"] = "unsure"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "ds"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ReviewServer]:
    server = ReviewServer(Review(open_dataset(_dataset(tmp_path))), reviewer="tester")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _label_ids(version: Path) -> Counter[int]:
    """How many boxes of each class id the version's YOLO labels hold."""
    return Counter(int(line.split()[0]) for f in version.glob("labels/*/*.txt") for line in f.read_text().splitlines())


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_boxes_come_least_agreement_first_and_decisions_survive_a_restart(tmp_path: Path) -> None:
    version = open_dataset(_dataset(tmp_path))
    review = Review(version)
    boxes = review.boxes()
    assert boxes[0]["answer"] == "unsure"
    rest = [b["agreement"] for b in boxes[1:]]
    assert rest == sorted(rest) and len(boxes) == len(review.rows)
    review.decide(boxes[0]["id"], "reject")
    review.decide(boxes[1]["id"], "relabel", "blue")
    review.decide(boxes[1]["id"], "accept")  # a later decision on a box replaces the earlier one
    with open(review.log, "a") as log:
        log.write('{"box": 3, "deci')  # a crash in the middle of a write
    review.close()
    again = Review(version)
    assert {i: d["decision"] for i, d in again.decisions.items()} == {boxes[0]["id"]: "reject", boxes[1]["id"]: "accept"}
    with pytest.raises(InputError, match="relabel needs a class"):
        again.decide(boxes[2]["id"], "relabel", "green")
    with pytest.raises(InputError, match="no box"):
        again.decide(len(review.rows), "accept")
    v2 = again.finish("bob")
    want = _label_ids(version.path)
    want[version.classes.index(boxes[0]["class"])] -= 1
    assert _label_ids(v2.path) == +want and v2.info["review"]["reject"] == 1 and not again.log.exists()
    with pytest.raises(InputError, match="not the latest version"):
        Review(version).finish()


def test_api_rejects_bad_requests_and_serves_only_version_images(served: ReviewServer) -> None:
    status, first = _call(served.url + "api/boxes?offset=0&limit=2")
    assert status == 200 and len(first["boxes"]) == 2 and first["total"] == len(served.review.rows)
    with urllib.request.urlopen(served.url + first["boxes"][0]["image"], timeout=10) as image:
        assert image.headers["Content-Type"] == "image/jpeg" and image.read()[:2] == b"\xff\xd8"
    for path in ("images/../version.json", "images/train/..%2f..%2fversion.json", "manifest.jsonl"):
        assert _call(served.url + path)[0] == 404
    assert _call(served.url + "api/boxes?offset=x")[0] == 400
    status, error = _call(served.url + "api/decide", {"box": 0, "decision": "maybe"})
    assert status == 400 and "accept" in error["error"]
    assert _call(served.url + "api/decide", {"decision": "accept"})[0] == 400
    assert _call(served.url + "api/decide", {"box": 0, "decision": "relabel", "class": "nope"})[0] == 400
    cross_site = urllib.request.Request(served.url + "api/decide", data=b'{"box": 0, "decision": "reject"}',
                                        headers={"Content-Type": "text/plain"})
    rebound = urllib.request.Request(served.url + "api/boxes", headers={"Host": "evil.example:80"})
    other_origin = urllib.request.Request(served.url + "api/finish", data=b"{}", headers={
        "Content-Type": "application/json", "Origin": "http://evil.example"})
    for request in (cross_site, rebound, other_origin):
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(request, timeout=10)
    assert served.review.decisions == {} and served.result is None


def test_keyboard_review_in_chromium_writes_the_next_version(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    root = _dataset(tmp_path)
    v1 = open_dataset(root)
    cli = subprocess.Popen([sys.executable, "-m", "labelsieve", "review", str(root), "--reviewer", "ada"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert cli.stdout is not None
        cli.stdout.readline()
        url = cli.stdout.readline().split()[1]
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(url)
            page.wait_for_selector("body[data-loaded]")
            order = page.evaluate("window.review.boxes.map(b => [b.id, b.class])")
            assert page.text_content("#position") == f"1 / {len(order)}"
            for n, key in enumerate(["a", "r", "2"], start=1):  # accept, reject, relabel to the 2nd class
                page.keyboard.press(key)
                page.wait_for_selector(f"body[data-decided='{n}']")
            assert page.get_attribute("body", "data-at") == "3"
            page.keyboard.press("ArrowLeft")
            page.keyboard.press("p")
            assert page.get_attribute("body", "data-at") == "1" and page.text_content("#decision") == "reject"
            page.keyboard.press("n")
            page.keyboard.press("9")  # there is no 9th class: nothing happens
            page.keyboard.press("f")
            page.wait_for_selector("body[data-finished='v2']")
            browser.close()
        out, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
    assert cli.returncode == 0, err
    v2 = versions(root)[-1]
    assert out.strip().splitlines()[-1] == str(v2.path) and v2.info["parent"] == v1.id
    assert v2.info["review"] | {"of": "v1", "reviewer": "ada", "decided": 3, "accept": 1, "reject": 1, "relabel": 1} \
        == v2.info["review"]
    rows = [json.loads(line) for line in (v2.path / "manifest.jsonl").read_text().splitlines()]
    reviewed = {(*tuple(r["box"]), r["image"]): r for r in rows if "review" in (r["provenance"] or {})}
    old = [json.loads(line) for line in (v1.path / "manifest.jsonl").read_text().splitlines()]
    expected = {0: ("accept", order[0][1]), 1: ("reject", None), 2: ("relabel", v1.classes[1])}
    assert len(reviewed) == 3
    want = _label_ids(v1.path)
    for rank, (decision, after) in expected.items():
        before = old[order[rank][0]]
        review = reviewed[(*tuple(before["box"]), before["image"])]["provenance"]["review"]
        assert (review["decision"], review["before"], review["after"]) == (decision, before["class"], after)
        assert review["reviewer"] == "ada" and review["when"]
        assert reviewed[(*tuple(before["box"]), before["image"])]["class"] == after
        want[v1.classes.index(before["class"])] -= 1
        if after is not None:
            want[v1.classes.index(after)] += 1
    assert _label_ids(v2.path) == +want
    assert len(rows) == len(old) and sum(r["class"] is None for r in rows) == 1
    assert sorted(p.name for p in (v2.path / "images" / "train").iterdir()) == \
        sorted(p.name for p in (v1.path / "images" / "train").iterdir())
    assert not list(root.glob(".review-*")) and not list(root.glob(".building-*"))
