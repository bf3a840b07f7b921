"""Each format is a reader and a writer over `Detections`: what one writes, the other reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelsieve.capture.format import as_annotations, from_annotations
from labelsieve.dataset.formats import as_coco, as_manifest, as_yolo, from_coco, from_manifest, from_yolo
from labelsieve.detections import Detections
from labelsieve.errors import InputError

W, H = 320, 240
CLASSES = ("glasses", "no_glasses")


def boxes() -> Detections:
    return Detections(np.array([[10, 20, 110, 220], [0.5, 0, 320, 240]], np.float32), np.array([0.72, 0.5], np.float32),
                      np.array(["no_glasses", "glasses"]), classes=CLASSES,
                      metadata={"file_name": "images/val/a.jpg", "width": W, "height": H}
                      ).with_provenance([{"answer": "no", "agreement": 0.72}, None])


def same(a: Detections, b: Detections) -> None:
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    assert a.class_name.tolist() == b.class_name.tolist()


def test_coco_round_trip() -> None:
    d = boxes()
    written = json.loads(json.dumps(as_coco([d, Detections.empty(metadata={**d.metadata, "file_name": "b.jpg"})],
                                           CLASSES)))
    frames, classes = from_coco(written, "x.json")
    assert classes == CLASSES and [f.metadata["file_name"] for f in frames] == ["images/val/a.jpg", "b.jpg"]
    same(frames[0], d)
    assert frames[0].confidence.tolist() == pytest.approx([0.72, 0.5]) and len(frames[1]) == 0
    written["annotations"][0]["category_id"] = 9
    with pytest.raises(InputError, match="unknown image or category"):
        from_coco(written, "x.json")


def test_yolo_round_trip() -> None:
    d = boxes()
    text = as_yolo(d, W, H, {c: i for i, c in enumerate(CLASSES)})
    assert text.splitlines()[0] == "1 0.187500 0.500000 0.312500 0.833333"
    same(from_yolo(text, W, H, CLASSES), d)
    with pytest.raises(InputError, match="x.txt:1: not a YOLO label line"):
        from_yolo("7 0.5 0.5 0.1 0.1\n", W, H, CLASSES, "x.txt")


def test_manifest_round_trip_keeps_provenance() -> None:
    d = boxes().with_metadata(source="c.capture#0", time=3.0)
    rows = as_manifest(d, "images/val/a.jpg", "val", W, H, {c: i for i, c in enumerate(CLASSES)})
    assert rows[0]["box"] == pytest.approx([10 / W, 20 / H, 110 / W, 220 / H], abs=1e-6) and rows[0]["class_id"] == 1
    back = from_manifest(json.loads(json.dumps(rows)), W, H)
    same(back, d)
    assert back.provenance == d.provenance and back.metadata == {"source": "c.capture#0", "time": 3.0}


def test_capture_annotations_round_trip() -> None:
    d = boxes()
    annotations = as_annotations(d, W, H)
    assert annotations.bboxes[0].x_min_normalized == pytest.approx(10 / W) and annotations.bboxes[1].id == ""
    back = from_annotations(annotations, W, H)
    same(back, d)
    assert back.provenance == d.provenance and back.confidence.tolist() == pytest.approx([0.72, 0.5])


def test_ignore_regions_ride_in_the_first_boxs_id_never_as_boxes() -> None:
    ignore = Detections(np.array([[160, 0, 200, 60]], np.float32), np.ones(1, np.float32), np.array(["glasses"])
                        ).with_provenance([{"rule": 0, "why": "unsure"}])
    annotations = as_annotations(boxes().with_metadata(ignore=ignore), W, H)
    assert len(annotations.bboxes) == 2  # no box of their own, so no Viam tool reads them as labels
    back = from_annotations(annotations, W, H)
    assert back.provenance == boxes().provenance  # the first box's own provenance, unchanged
    np.testing.assert_allclose(back.metadata["ignore"].xyxy, ignore.xyxy, atol=1e-3)
    assert back.metadata["ignore"].provenance == [{"rule": 0, "why": "unsure"}]
    assert "ignore" not in from_annotations(as_annotations(boxes(), W, H), W, H).metadata
