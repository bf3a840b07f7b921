"""Model directories in shared storage (any fsspec URL): publish, the `current` pointer, fetch with a local cache.

Layout under a fleet URL: `models/<model id>/...` (immutable once written) and `current`, a small JSON naming the model
id. `publish` uploads every model file first and rewrites `current` last, so a robot that reads the pointer always finds
a complete model; each robot caches what it fetched and keeps serving it while the storage is unreachable.

Light on purpose: the fast detector reads pointers on robots that have neither torch nor ultralytics.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from labelsieve.errors import BackendUnavailable

__all__ = ["MODEL_INFO", "POINTER", "fetch_model", "is_url", "publish", "read_pointer", "read_remote_json"]

POINTER = "current"
MODEL_INFO = "model.json"


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def read_remote_json(url: str) -> dict[str, Any] | None:
    """A small JSON file at `url`, or None when it does not exist. Storage that cannot be reached raises
    BackendUnavailable, so callers tell "nothing deployed yet" from "cannot see the storage"."""
    try:
        with fsspec.open(url, "rb") as f:
            value: dict[str, Any] = json.loads(f.read())
            return value
    except FileNotFoundError:
        return None
    except Exception as exc:  # each fsspec backend raises its own types (botocore's EndpointConnectionError, ...)
        raise BackendUnavailable(f"cannot read {url}: {type(exc).__name__}: {exc}") from exc


def read_pointer(fleet: str) -> dict[str, Any] | None:
    return read_remote_json(f"{fleet.rstrip('/')}/{POINTER}")


def publish(model_dir: Path, fleet: str, model_id: str) -> str:
    """Upload `model_dir` to `<fleet>/models/<model_id>/` (model.json last), then point `current` at it. Returns the
    model's URL. Re-publishing the same id uploads again, which is harmless: its files are the same."""
    fleet = fleet.rstrip("/")
    fs, root = fsspec.core.url_to_fs(fleet)
    target = f"{root}/models/{model_id}"
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == MODEL_INFO):  # model.json last: its presence means complete
        dest = f"{target}/{path.relative_to(model_dir).as_posix()}"
        fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)  # local and mounted stores need folders; S3 ignores it
        fs.put_file(str(path), dest)
    staged = f"{root}/.{POINTER}.{os.getpid()}"
    with fs.open(staged, "wb") as f:
        f.write(json.dumps({"model": model_id}).encode())
    fs.mv(staged, f"{root}/{POINTER}")  # a rename (local) or a server-side copy (S3): readers see old or new, never half
    return f"{fleet}/models/{model_id}"


def fetch_model(fleet: str, model_id: str, cache: Path) -> Path:
    """Model `model_id` of the fleet, downloaded once into `cache/<model id>` (complete or absent, never half)."""
    local = cache / model_id
    if (local / MODEL_INFO).is_file():
        return local
    fs, root = fsspec.core.url_to_fs(fleet.rstrip("/"))
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=cache))
    try:
        source = f"{root}/models/{model_id}"
        for path in fs.find(source):
            dest = partial / Path(path).relative_to(Path(source))
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(dest))
        if not (partial / MODEL_INFO).is_file():
            raise BackendUnavailable(f"{fleet}: model {model_id} is incomplete in storage (no {MODEL_INFO})")
        try:
            os.replace(partial, local)
        except OSError:
            if not (local / MODEL_INFO).is_file():  # else another process fetched it first: use theirs
                raise
    except BackendUnavailable:
        raise
    except Exception as exc:  # as in read_remote_json: any backend's error means the storage failed us
        raise BackendUnavailable(f"cannot download model {model_id} from {fleet}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return local
