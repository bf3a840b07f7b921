"""Viam's cloud, both ways: `viam://` sources and `viam dataset export` folders as capture files (`capture_sources`),
labels and images out to the app (`push`), capture sync to the app (`sync_to_viam`), Viam's dataset format
(`read_viam_dataset`, `export_viam`). Only `labelsieve.cloud.viam` holds a connection."""

from __future__ import annotations

from pathlib import Path

__all__ = ["capture_sources", "is_cloud_source"]


def is_cloud_source(source: str) -> bool:
    """A `viam://` URL, or a `viam dataset export` folder (or its dataset.jsonl)."""
    from labelsieve.cloud.jsonl import find_jsonl
    from labelsieve.cloud.viam import is_viam_url

    return is_viam_url(source) or ("://" not in source and find_jsonl(Path(source)) is not None)


def capture_sources(source: str, *, progress: bool = True) -> list[Path]:
    """The local capture files standing for a cloud source (see `is_cloud_source`), made or refreshed in the cache."""
    from labelsieve.cloud.captures import pull
    from labelsieve.cloud.jsonl import read_viam_dataset
    from labelsieve.cloud.viam import is_viam_url

    return pull(source, progress=progress) if is_viam_url(source) else read_viam_dataset(Path(source))
