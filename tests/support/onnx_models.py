"""Hand-built ONNX models (onnx.helper, bytes in memory, no training): a YOLO-shaped head that answers fixed boxes, and
the broken variants a hot swap must refuse."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def yolo_onnx(path: Path, names: Sequence[str], boxes: Sequence[tuple[float, ...]] = ((16, 16, 8, 8, 0, 0.9),),
              size: int = 32, *, classes_in_head: int | None = None, uint8_input: bool = False,
              identity: bool = False, model_json: dict[str, object] | None = None) -> Path:
    """An ultralytics-like export at `path`: input `images` (1x3xSxS), output (1, 4 + classes, anchors) holding `boxes`
    as (cx, cy, w, h, class index, score) whatever the frame. `classes_in_head` makes the head disagree with `names`;
    `uint8_input` takes bytes instead of floats; `identity` answers the frame itself. `model_json` is written beside."""
    from onnx import TensorProto, helper, numpy_helper, save

    channels = 4 + (len(names) if classes_in_head is None else classes_in_head)
    head = np.zeros((1, channels, max(len(boxes), 1)), np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(boxes):
        head[0, :4, anchor] = cx, cy, w, h
        head[0, 4 + int(cls), anchor] = score
    input_type = TensorProto.UINT8 if uint8_input else TensorProto.FLOAT
    frame = helper.make_tensor_value_info("images", input_type, [1, 3, size, size])
    if identity:
        nodes = [helper.make_node("Identity", ["images"], ["output0"])]
        output = helper.make_tensor_value_info("output0", input_type, [1, 3, size, size])
        initializers = []
    else:  # the head depends on the frame (times zero), so onnxruntime cannot fold the input away
        nodes = [helper.make_node("Cast", ["images"], ["floats"], to=TensorProto.FLOAT),
                 helper.make_node("ReduceSum", ["floats"], ["sum"], keepdims=1),
                 helper.make_node("Reshape", ["sum", "shape"], ["flat"]),
                 helper.make_node("Mul", ["flat", "zero"], ["nothing"]),
                 helper.make_node("Add", ["head", "nothing"], ["output0"])]
        output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(head.shape))
        initializers = [numpy_helper.from_array(head, "head"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
                        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape")]
    graph = helper.make_graph(nodes, "yolo", [frame], [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": repr(dict(enumerate(names))), "imgsz": repr([size, size])})
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    if model_json is not None:
        (path.parent / "model.json").write_text(json.dumps(model_json))
    return path
