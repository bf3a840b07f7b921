"""`Detections` as the one labeled-box value: provenance and frame metadata survive every operation."""

from __future__ import annotations

import numpy as np

from labelsieve.detections import Detections


def dets() -> Detections:
    return Detections(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 70]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array(["a", "a", "b"]),
                      metadata={"source": "x.capture#3", "time": 12.5}).with_provenance([{"by": 1}, None, {"by": 3}])


def test_provenance_and_metadata_survive_indexing_clip_nms_and_merge() -> None:
    d = dets()
    assert d.provenance == [{"by": 1}, None, {"by": 3}]
    for derived in (d[[0, 2]], d[1], d.clip(55, 55), d.nms(0.5), d.sorted(), d.with_classes(["b", "a"])):
        assert derived.metadata == d.metadata
    assert d.nms(0.5).provenance == [{"by": 1}, {"by": 3}]
    assert d.clip(55, 55).xyxy[2].tolist() == [50, 50, 55, 55]
    other = Detections.empty(metadata={"source": "y", "stream": "s"})
    merged = Detections.merge([d, other])
    assert merged.metadata == {"source": "x.capture#3", "time": 12.5, "stream": "s"}  # the first part's value wins
    assert merged.provenance == d.provenance
    assert Detections.empty().provenance == [] and Detections.merge([]).metadata == {}
    assert d.with_metadata(stream="cam").metadata == {"source": "x.capture#3", "time": 12.5, "stream": "cam"}
