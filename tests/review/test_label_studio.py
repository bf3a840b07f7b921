"""The Label Studio round trip against a real Label Studio server (SQLite, 127.0.0.1, started here): export a version's
tasks, review them through label-studio-sdk as a reviewer would, export, import back, check every box.

Label Studio pins many packages of its own, so it lives in its own venv: `make label-studio-venv` (which .ci/run calls)
creates it with a migrated template data folder; without it the test skips."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.review import review_dataset

from labelsieve.dataset import open_dataset, versions

VENV = Path(os.environ.get("LABEL_STUDIO_VENV") or Path(__file__).resolve().parents[2] / ".venv-label-studio")
TOKEN = "labelsieve0test0token0000000000000000000"  # the template's legacy API token (Makefile: label-studio-venv)
HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def label_studio(tmp_path: Path) -> Iterator[str]:
    if not (VENV / "bin" / "label-studio").exists() or not (VENV / "template").is_dir():
        pytest.skip(f"no Label Studio venv at {VENV}: `make label-studio-venv` creates it (.ci/run does)")
    data = tmp_path / "label-studio"
    shutil.copytree(VENV / "template", data)
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "DJANGO_DB": "sqlite",
           "LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    server = subprocess.Popen([str(VENV / "bin" / "label-studio"), "start", "--internal-host", "127.0.0.1", "--port",
                               str(port), "--no-browser"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "label-studio.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:  # its health endpoint is the only readiness signal it offers
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as health:
                    if health.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert server.poll() is None, (tmp_path / "label-studio.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Label Studio did not start in 180 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _rows(version: Path) -> list[dict]:
    return [json.loads(line) for line in (version / "manifest.jsonl").read_text().splitlines()]


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    run = subprocess.run([sys.executable, "-m", "labelsieve", *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})})
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()[-1]


def test_label_studio_round_trip(label_studio: str, tmp_path: Path) -> None:
    root = review_dataset(tmp_path)
    v1 = open_dataset(root)
    out = Path(_cli("export", str(root), "--format", "label-studio", str(tmp_path / "ls"),
                    env={"LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path)}))
    assert '<Label value="not_blue"/>' in (out / "label_config.xml").read_text()
    tasks = json.loads((out / "tasks.json").read_text())
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"] == "v1" and prediction["result"][0]["score"] > 0
    reviewer = subprocess.run([str(VENV / "bin" / "python"), str(HERE / "label_studio_reviewer.py"), label_studio, TOKEN,
                               str(out), str(tmp_path)], capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert reviewer.returncode == 0, reviewer.stderr[-3000:]
    done = json.loads(reviewer.stdout.strip().splitlines()[-1])
    assert done["served"]  # Label Studio serves the version's images from where they are

    printed = _cli("import", "label-studio", str(out / "export.json"), str(root))
    v2 = versions(root)[-1]
    assert printed == str(v2.path) and v2.name == "v2"
    assert v2.classes == (*v1.classes, "not_blue") and v2.info["review"]["via"] == "label-studio"
    old, new = _rows(v1.path), _rows(v2.path)
    reviewed = {tuple(r["provenance"]["review"]["before"]["box"]) if r["provenance"]["review"]["before"] else None: r
                for r in new if "review" in (r["provenance"] or {})}
    region = {f"box{i}": row for i, row in enumerate(old)}
    for rid in done["accepted"]:
        row = reviewed[tuple(region[rid]["box"])]
        assert row["provenance"]["review"]["changes"] == ["accepted"] and row["box"] == region[rid]["box"]
    for rid, value in done["moved"].items():
        row = reviewed[tuple(region[rid]["box"])]
        assert row["provenance"]["review"]["changes"] == ["moved"] and row["class"] == region[rid]["class"]
        x, y = value["x"] / 100, value["y"] / 100
        assert row["box"] == pytest.approx([x, y, x + value["width"] / 100, y + value["height"] / 100], abs=1e-6)
    for rid in done["deleted"]:
        row = reviewed[tuple(region[rid]["box"])]
        assert row["provenance"]["review"]["changes"] == ["deleted"] and row["class"] is None
    drawn = reviewed[None]
    assert drawn["image"] == done["drawn"]["image"] and drawn["class"] == "not_blue"
    assert drawn["box"] == pytest.approx([0.1, 0.2, 0.4, 0.45], abs=1e-6)
    assert len(reviewed) == len(done["accepted"]) + len(done["moved"]) + len(done["deleted"]) + 1
    untouched = [r for r in new if "review" not in (r["provenance"] or {})]
    assert len(untouched) == len(old) - len(reviewed) + 1  # every other box as it was
    assert all(r["provenance"]["review"]["via"] == "label-studio" for r in reviewed.values())
    # the drawn box in pixels on its image: YOLO label of class "not_blue" at the drawn place
    label = (v2.path / "labels" / drawn["image"].split("/")[1] / (Path(drawn["image"]).stem + ".txt")).read_text()
    assert f"{v2.classes.index('not_blue')} 0.250000 0.325000 0.300000 0.250000" in label.splitlines()
