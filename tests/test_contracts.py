"""The shared contracts: Detections and typed attributes."""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from labelsieve.attributes import Attributes, FieldProblem
from labelsieve.detections import Detections
from labelsieve.errors import ConfigError


def dets(*rows: tuple[float, float, float, float, float, str]) -> Detections:
    return Detections(np.array([r[:4] for r in rows]), np.array([r[4] for r in rows]), np.array([r[5] for r in rows]))


def test_detections_validate_shapes_on_construction() -> None:
    with pytest.raises(ValueError, match=r"expected boxes of shape \(N, 4\), got \(3, 5\)"):
        Detections(np.zeros((3, 5)), np.zeros(3), np.array(["a"] * 3))
    with pytest.raises(ValueError, match="expected confidence of length 2"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.array(["a", "b"]))
    assert len(Detections.empty()) == 0 and Detections.empty().xyxy.shape == (0, 4)


def test_nms_is_class_aware_and_returns_a_new_value() -> None:
    d = dets((0, 0, 10, 10, 0.9, "person"), (1, 1, 10, 10, 0.8, "person"), (1, 1, 10, 10, 0.7, "dog"))
    kept = d.nms(0.5)
    assert sorted(kept.class_name.tolist()) == ["dog", "person"] and kept.confidence.max() == pytest.approx(0.9)
    assert len(d.nms(0.5, class_agnostic=True)) == 1
    assert len(d) == 3


def test_clip_and_filtering_by_index() -> None:
    d = dets((-5, -5, 50, 50, 0.9, "a"), (200, 200, 300, 300, 0.4, "b"))
    clipped = d.clip(100, 100)
    assert clipped.xyxy.tolist() == [[0, 0, 50, 50]]  # the box wholly outside is dropped
    assert d[d.confidence > 0.5].class_name.tolist() == ["a"]
    assert Detections.merge([d, clipped]).class_name.tolist() == ["a", "b", "a"]


@dataclass(frozen=True)
class Example(Attributes):
    size: int
    ratio: float = 0.5
    mode: Literal["fast", "slow"] = "fast"
    names: tuple[str, ...] = ()
    limits: float | dict[str, float] = 0.3

    def check(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise FieldProblem("ratio", f"must be within 0..1, got {self.ratio}")


def test_attributes_coerce_viam_numbers_and_check_fields() -> None:
    parsed = Example.parse("det", {"size": 640.0, "ratio": 1, "names": ["a", "b"], "limits": {"a": 0.2}})
    assert parsed == Example(size=640, ratio=1.0, names=("a", "b"), limits={"a": 0.2})
    assert isinstance(parsed.size, int)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "det: 'attributes.size' is required"),
        ({"size": 1, "szie": 2}, "did you mean 'size'?"),
        ({"size": 1.5}, "'attributes.size' must be a whole number, got 1.5"),
        ({"size": 1, "mode": "fsat"}, "must be one of 'fast', 'slow', got 'fsat' (did you mean 'fast'?)"),
        ({"size": 1, "ratio": 2}, "'attributes.ratio' must be within 0..1, got 2.0"),
        ({"size": 1, "names": "a"}, "'attributes.names' must be a list"),
        ({"size": 1, "limits": {"a": "x"}}, "attributes.limits"),
    ],
)
def test_attribute_errors_name_resource_field_and_fix(attrs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Example.parse("det", attrs)
    assert message in str(err.value)


def test_class_ids_are_stable_and_survive_filtering_merge_and_nms() -> None:
    d = Detections(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]), [0.9, 0.8, 0.7],
                   ["dog", "dog", "person"], {"provenance": [{"by": "a"}, {"by": "b"}, {"by": "c"}]},
                   classes=("person", "dog"))
    assert d.class_id.tolist() == [1, 1, 0] and d.data["provenance"].dtype == object
    kept = d.nms(0.5)
    assert kept.classes == ("person", "dog") and kept.class_id.tolist() == [1, 0]
    assert [p["by"] for p in kept.data["provenance"]] == ["a", "c"]
    assert d[2].classes == ("person", "dog") and d[2].class_id.tolist() == [0]
    # a name the classes lack gets the next id, in order of first appearance; strict callers refuse it
    cat = Detections(np.array([[1, 1, 5, 5]]), [0.5], ["cat"], classes=("person",))
    assert cat.classes == ("person", "cat") and cat.class_id.tolist() == [1]
    merged = Detections.merge([d, cat])
    assert merged.classes == ("person", "dog", "cat") and merged.class_id.tolist() == [1, 1, 0, 2]
    assert [p and p["by"] for p in merged.data["provenance"]] == ["a", "b", "c", None]  # kept, not dropped
    assert d.with_classes(["dog", "person"]).class_id.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"\['person'\] are not among the classes \['dog'\]"):
        d.with_classes(["dog"], strict=True)
    assert Detections.merge([Detections.empty(("a", "b"))]).classes == ("a", "b")


def _package_exceptions() -> list[type[BaseException]]:
    """Every exception class defined anywhere in the package, after importing every module."""
    import importlib
    import pkgutil
    import sys

    import labelsieve

    for info in pkgutil.walk_packages(labelsieve.__path__, "labelsieve."):
        if not info.name.endswith("__main__"):  # the CLI entry point runs on import
            importlib.import_module(info.name)
    return sorted({value for name, module in list(sys.modules.items()) if name.split(".")[0] == "labelsieve"
                   for value in vars(module).values()
                   if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name},
                  key=lambda kind: f"{kind.__module__}.{kind.__qualname__}")


def test_every_exception_in_the_package_is_in_the_tree_with_its_documented_status() -> None:
    """errors.py draws the tree with each class's status; the seam maps each to it. An exception class defined anywhere
    else is outside the tree (a caller catching LabelsieveError misses it) unless it is private to its module and
    under LabelsieveError."""
    import re

    from grpclib import Status

    from labelsieve import errors
    from labelsieve.viam.errors import grpc_status

    def subclasses(kind: type) -> set[type]:
        return {sub for direct in kind.__subclasses__() for sub in {direct, *subclasses(direct)}}

    found = _package_exceptions()
    outside = [f"{k.__module__}.{k.__qualname__}" for k in found if not issubclass(k, errors.LabelsieveError)]
    assert not outside, f"exception classes outside the LabelsieveError tree: {outside}"
    public = {k for k in found if not k.__name__.startswith("_")}
    elsewhere = [f"{k.__module__}.{k.__qualname__}" for k in public if k.__module__ != errors.__name__]
    assert not elsewhere, f"define these in labelsieve/errors.py (with their status row): {elsewhere}"
    documented = dict(re.findall(r"(\w+)\s.*->\s*(\w+)\s*$", errors.__doc__ or "", re.MULTILINE))
    tree = {k for k in subclasses(errors.LabelsieveError) | {errors.LabelsieveError} if not k.__name__.startswith("_")
            and k.__module__.split(".")[0] == "labelsieve"}
    assert {k.__name__ for k in tree} == set(documented) == set(errors.__all__)
    for kind in tree:
        exc = kind.__new__(kind)  # the status depends on the class only, whatever its constructor needs
        assert grpc_status(exc) == Status[documented[kind.__name__]], kind.__name__
