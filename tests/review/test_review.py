"""`labelsieve review`: the decisions log, the HTTP API, and the page driven by the keyboard in a real headless Chromium
(Debian's, through Playwright), down to the next dataset version's labels and manifest."""

from __future__ import annotations

import http.client
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
from support.review import review_dataset as _dataset

from labelsieve.dataset import open_dataset, versions
from labelsieve.errors import InputError
from labelsieve.review import Review, ReviewServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


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


def _rows(version: Path) -> list[dict]:
    return [json.loads(line) for line in (version / "manifest.jsonl").read_text().splitlines()]


def test_changes_survive_a_restart_and_land_in_the_next_version(tmp_path: Path) -> None:
    version = open_dataset(_dataset(tmp_path))
    review = Review(version)
    assert review.classes == (*version.classes, "not_blue")
    boxes = review.boxes()
    assert boxes[0]["answer"] == "unsure" and boxes[0]["question"] and len(boxes[0]["crop"]) == 4
    rest = [b["agreement"] for b in boxes[1:]]
    assert rest == sorted(rest) and len(boxes) == len(review.rows)
    first, second, third, fourth = (b["id"] for b in boxes[:4])
    review.decide(first, "reject")
    review.decide(second, "relabel", "not_blue")
    review.decide(second, "accept")  # accepts the box as it now is: relabelled
    review.decide(third, "move", xyxy=[0.1, 0.1, 0.5, 0.6])
    review.decide(third, "relabel", "red" if boxes[2]["class"] != "red" else "blue")
    drawn = review.decide(0, "add", "not_blue", [0.7, 0.7, 0.9, 0.95], boxes[3]["image"])["box"]
    for n in (1, 2):  # a drawn box taken back leaves its id unused: the page may still hold it
        assert review.decide(0, "add", "red", [0.1, 0.1, 0.2, 0.2], boxes[3]["image"])["box"] == drawn + n
        review.undo()
    review.decide(fourth, "reject")
    assert review.undo() is not None and fourth not in review.decisions  # the last change taken back
    with pytest.raises(InputError, match="already"):
        review.decide(first, "relabel", boxes[0]["class"])  # a deleted box keeps its class; relabelling to it is no change
    with pytest.raises(InputError, match="rules can produce"):
        review.decide(fourth, "relabel", "green")
    with pytest.raises(InputError, match="no box"):
        review.decide(len(review.rows) + 5, "accept")
    with pytest.raises(InputError, match="x0 < x1"):
        review.decide(fourth, "move", xyxy=[0.5, 0.5, 0.4, 0.9])
    with pytest.raises(InputError, match="no image"):
        review.decide(0, "add", "red", [0.1, 0.1, 0.2, 0.2], "images/train/../../version.json")
    review.close()
    again = Review(version)
    assert again.counts() | {"decided": 3, "deleted": 1, "relabelled": 2, "moved": 1, "added": 1, "accepted": 0} \
        == again.counts()
    v2 = again.finish("bob")
    assert v2.classes == (*version.classes, "not_blue") and v2.info["review"]["via"] == "page"
    reviewed = {r["provenance"]["review"]["before"] and tuple(r["provenance"]["review"]["before"]["box"]):
                r for r in _rows(v2.path) if "review" in (r["provenance"] or {})}
    old = {b["id"]: b for b in boxes}
    changes = {key: (r["provenance"]["review"]["changes"], r["class"]) for key, r in reviewed.items()}
    assert changes == {tuple(old[first]["box"]): (["deleted"], None),
                       tuple(old[second]["box"]): (["relabelled"], "not_blue"),
                       tuple(old[third]["box"]): (["moved", "relabelled"], reviewed[tuple(old[third]["box"])]["class"]),
                       None: (["added"], "not_blue")}
    assert reviewed[tuple(old[third]["box"])]["box"] == [0.1, 0.1, 0.5, 0.6] and drawn >= len(review.rows)
    added = reviewed[None]
    assert added["image"] == boxes[3]["image"] and added["box"] == [0.7, 0.7, 0.9, 0.95]
    assert added["provenance"]["review"]["after"] == {"class": "not_blue", "box": [0.7, 0.7, 0.9, 0.95]}
    ids = dict(enumerate(v2.classes))
    labels = Counter(ids[int(line.split()[0])] for f in v2.path.glob("labels/*/*.txt") for line in f.read_text().splitlines())
    assert labels["not_blue"] == 2 and sum(labels.values()) == len(review.rows)  # one deleted, one added
    assert not again.log.exists()
    with pytest.raises(InputError, match="not the latest version"):
        Review(version).finish()


def test_a_torn_last_line_does_not_eat_the_next_decision(tmp_path: Path) -> None:
    """A crash in the middle of a write leaves a line without its end; the next change must start a line of its own."""
    version = open_dataset(_dataset(tmp_path))
    review = Review(version)
    review.decide(0, "reject")
    review.close()
    with open(review.log, "a") as log:
        log.write('{"box": 3, "deci')
    after_crash = Review(version)
    after_crash.decide(1, "accept")  # confirmed to the page: it is on disk
    after_crash.close()
    assert {i: d["decision"] for i, d in Review(version).decisions.items()} == {0: "reject", 1: "accept"}


def test_two_hundred_concurrent_decisions_are_all_answered(served: ReviewServer) -> None:
    """The listen backlog holds a burst of connections (socketserver's default of 5 reset some of them)."""
    port, n = served.server_address[1], len(served.review.rows)
    ready = threading.Barrier(200)
    answers: list[object] = []

    def decide(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        ready.wait()
        try:
            connection.request("POST", "/api/decide", json.dumps({"box": i % n, "decision": "accept"}),
                               {"Content-Type": "application/json"})
            answers.append(connection.getresponse().status)
        except OSError as exc:
            answers.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 200 and len(served.review.history) == 200


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
    assert _call(served.url + "api/decide", {"changes": [{"box": 0, "decision": "accept"}, 7]})[0] == 400
    cross_site = urllib.request.Request(served.url + "api/decide", data=b'{"box": 0, "decision": "reject"}',
                                        headers={"Content-Type": "text/plain"})
    rebound = urllib.request.Request(served.url + "api/boxes", headers={"Host": "evil.example:80"})
    other_origin = urllib.request.Request(served.url + "api/finish", data=b"{}", headers={
        "Content-Type": "application/json", "Origin": "http://evil.example"})
    for request in (cross_site, rebound, other_origin):
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(request, timeout=10)
    assert served.review.decisions == {} and served.result is None
    status, both = _call(served.url + "api/decide", {"changes": [{"box": 0, "decision": "accept"},
                                                                   {"box": 1, "decision": "reject"}]})
    assert status == 200 and both["counts"]["decided"] == 2
    status, undone = _call(served.url + "api/undo", {})
    assert status == 200 and undone["undone"]["box"] == 1 and undone["decision"] is None


def _drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()


def test_review_in_chromium_keys_mouse_and_grid_write_the_next_version(tmp_path: Path) -> None:
    """A reviewer's session on the page: keys, a resize and a drawn box with the mouse, an undo, a reload, a grid page,
    finishing; the next version holds what the page showed."""
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
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
            page.goto(url)
            page.wait_for_selector("body[data-loaded]")
            classes = page.evaluate("window.review.classes")
            assert classes == [*v1.classes, "not_blue"]
            total = len(_rows(v1.path))
            assert page.text_content("#position") == f"1 / {total}"
            assert page.text_content("#question").startswith("Is this") and page.text_content("#source").startswith(str(root.parent))
            decided = 0

            def wait_decided() -> None:
                nonlocal decided
                decided += 1
                page.wait_for_selector(f"body[data-decided='{decided}']")

            for key in ("a", "r"):
                page.keyboard.press(key)
                wait_decided()
            page.keyboard.press(str(classes.index("not_blue") + 1))
            wait_decided()
            page.keyboard.press("9")
            assert "no class behind" in page.text_content("#message")
            own = page.evaluate("current().class")
            page.keyboard.press(str(classes.index(own) + 1))
            assert "already" in page.text_content("#message")
            image = page.locator("#image").bounding_box()
            handle = page.locator("#box .se").bounding_box()
            before = page.evaluate("current().box")
            _drag(page, (handle["x"] + 5, handle["y"] + 5), (handle["x"] + 5 - 40, handle["y"] + 5 - 30))
            wait_decided()
            resized = page.evaluate("current().decision.xyxy")
            assert resized[:2] == before[:2]
            assert abs(resized[2] - (before[2] - 40 / image["width"])) < 3 / image["width"]
            assert abs(resized[3] - (before[3] - 30 / image["height"])) < 3 / image["height"]
            corner = (0.55, 0.55) if resized[2] < 0.5 or resized[3] < 0.5 else (0.02, 0.02)  # outside the resized box
            start = (image["x"] + corner[0] * image["width"], image["y"] + corner[1] * image["height"])
            _drag(page, start, (start[0] + 0.3 * image["width"], start[1] + 0.25 * image["height"]))
            wait_decided()
            drawn = page.evaluate("[current().id, current().class, current().image, current().box]")
            assert drawn[0] >= total and drawn[1] == own
            page.keyboard.press(str(classes.index("not_red") + 1 if own != "not_red" else 1))
            wait_decided()
            page.keyboard.press("z")  # takes the relabel of the drawn box back
            page.wait_for_function("document.getElementById('message').textContent.startsWith('undone')")
            assert page.evaluate("now(current()).cls") == own
            page.keyboard.press("Escape")
            page.keyboard.press("n")
            kept = page.get_attribute("body", "data-box")
            page.reload()
            page.wait_for_selector("body[data-loaded]")
            assert page.get_attribute("body", "data-box") == kept  # the queue position survives a reload
            decided = 0  # counted by this page load
            page.keyboard.press("g")
            page.wait_for_selector("body[data-view='grid'][data-grid-ready]")
            cells = page.locator("#grid .cell")
            grid = [int(cells.nth(i).get_attribute("data-id")) for i in range(cells.count())]
            cells.nth(1).click()
            page.keyboard.press("a")
            wait_decided()
            page.keyboard.press("g")
            page.wait_for_selector("body[data-view='frame']")
            shown = page.evaluate("""window.review.boxes.filter(b => changes(b).length)
                                     .map(b => [b.id, b.image, b.added ? null : b.box, changes(b), now(b)])""")
            page.keyboard.press("f")
            page.wait_for_selector("body[data-finished='v2']")
            assert "unreviewed boxes are kept as they are" in dialogs[0]
            assert page.is_visible("#done")
            page.keyboard.press("a")
            assert "keys do nothing" in page.text_content("#message")
            browser.close()
        out, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
    assert cli.returncode == 0, err
    v2 = versions(root)[-1]
    assert out.strip().splitlines()[-1] == str(v2.path) and v2.info["parent"] == v1.id
    assert v2.classes == (*v1.classes, "not_blue")
    marked = grid[1]
    by_id = {b[0]: b for b in shown}
    assert by_id[marked][3] == ["deleted"] and all(by_id[i][3] for i in grid)
    written = {(r["image"], tuple(r["provenance"]["review"]["before"]["box"]) if r["provenance"]["review"]["before"]
                else None): r for r in _rows(v2.path) if "review" in (r["provenance"] or {})}
    assert len(written) == len(shown)
    for _, image, box, changes, state in shown:
        row = written[(image, tuple(box) if box else None)]
        review = row["provenance"]["review"]
        assert review["changes"] == changes and review["reviewer"] == "ada"
        assert row["class"] == (None if state["deleted"] else state["cls"])
        if not state["deleted"]:
            assert row["box"] == pytest.approx(state["xyxy"], abs=1e-6)
    assert written[(drawn[2], None)]["class"] == own
    assert not list(root.glob(".review-*")) and not list(root.glob(".building-*"))
