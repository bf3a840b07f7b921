"""Label formats in and out, one file each, each a reader and a writer over `Detections` (pixel xyxy; frame facts such as
`file_name`, `width` and `height` in `metadata`): COCO JSON (what most tools read and write), YOLO label lines (what
ultralytics trains on) and the dataset's `manifest.jsonl` (one row per box with its provenance). Capture annotations
convert in `labelsieve.capture.format`."""

from labelsieve.dataset.formats.coco import as_coco, from_coco
from labelsieve.dataset.formats.manifest import as_manifest, from_manifest
from labelsieve.dataset.formats.yolo import SPLITS, as_yolo, data_yaml, from_yolo

__all__ = ["SPLITS", "as_coco", "as_manifest", "as_yolo", "data_yaml", "from_coco", "from_manifest", "from_yolo"]
