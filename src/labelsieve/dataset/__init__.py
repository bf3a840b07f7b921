"""Dataset versions from capture files: YOLO + COCO exports, a frozen class order, a leak-free seeded split, and each
box's provenance in a manifest. `build_dataset(["s3://bucket/capture"], Path("datasets/glasses"))`."""

from labelsieve.dataset.build import BuildResult, DatasetVersion, build_dataset, open_dataset, revise_dataset, versions

__all__ = ["BuildResult", "DatasetVersion", "build_dataset", "open_dataset", "revise_dataset", "versions"]
