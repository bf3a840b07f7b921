"""A stand-in for ultralytics where it cannot be installed (Python 3.10 here has no torch): `YOLO(...).train()` copies
the dataset folder it was given to `$FAKE_ULTRALYTICS_SEEN` with its settings, and writes placeholder weights; `export()`
writes a placeholder .onnx. Only for checking what the training script hands ultralytics, under Viam's Python."""

import json
import os
import shutil
from pathlib import Path


class YOLO:
    def __init__(self, model):
        self.model = model

    def train(self, data, project, name, **settings):
        seen = Path(os.environ["FAKE_ULTRALYTICS_SEEN"])
        shutil.copytree(Path(data).parent, seen)
        (seen / "settings.json").write_text(json.dumps({"model": self.model, **settings}))
        weights = Path(project) / name / "weights"
        weights.mkdir(parents=True)
        (weights / "best.pt").write_bytes(b"weights")

    def export(self, format, **settings):
        out = Path(self.model).with_suffix("." + format)
        out.write_bytes(b"exported " + Path(self.model).read_bytes())
        return str(out)
