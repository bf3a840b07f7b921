"""Model directories in shared storage (any fsspec URL): publish, the `current` pointer, fetch with a local cache.

Layout under a fleet URL: `models/<model id>/...` and `current`, a small JSON naming the model id. `publish` uploads
every model file, then `manifest.json` (each file's size and sha256; its presence means the model is complete), and
rewrites `current` last, so a robot that reads the pointer always finds a complete model.

A published model is immutable: publishing an id that is already complete in storage uploads nothing, and is refused
when the content differs (a robot may be fetching those very files; give the new model a new id). A robot fetches into
a scratch folder, checks every file's size and sha256 against the manifest, and only then moves it into its cache: a
mismatch (a file being rewritten by hand, a torn copy) is not cached, and the model it serves keeps serving. Each robot
keeps serving what it fetched while the storage is unreachable.

Light on purpose: the fast detector reads pointers on robots that have neither torch nor ultralytics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from labelsieve.errors import BackendUnavailable, ModelError

__all__ = ["MANIFEST", "MODEL_INFO", "POINTER", "fetch_model", "is_url", "manifest", "publish", "read_pointer",
           "read_remote_json"]

POINTER = "current"
MODEL_INFO = "model.json"
MANIFEST = "manifest.json"


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


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def manifest(model_dir: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size": bytes, "sha256": hex}} of every file in a model directory but the manifest itself."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(model_dir).as_posix(): {"size": p.stat().st_size, "sha256": _digest(p)} for p in files}


def publish(model_dir: Path, fleet: str, model_id: str) -> str:
    """Upload `model_dir` to `<fleet>/models/<model_id>/` (its manifest last), then point `current` at it. Returns the
    model's URL. An id already complete in storage is not uploaded again; with other content it is refused."""
    fleet = fleet.rstrip("/")
    fs, root = fsspec.core.url_to_fs(fleet)
    target = f"{root}/models/{model_id}"
    files = manifest(model_dir)
    published = read_remote_json(f"{fleet}/models/{model_id}/{MANIFEST}")
    if published is not None and published != files:
        raise ModelError(f"{fleet}: model id {model_id} is already published with other content, and a published model "
                         f"is immutable (robots may be fetching it); give this model a new id in {model_dir / MODEL_INFO}")
    if published is None:  # absent, or a publish cut short before its manifest: nobody has fetched it
        for name in files:
            dest = f"{target}/{name}"
            fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)  # local and mounted stores need folders; S3 ignores it
            fs.put_file(str(model_dir / name), dest)
        _write(fs, root, f"{target}/{MANIFEST}", json.dumps(files, indent=1).encode())
    _write(fs, root, f"{root}/{POINTER}", json.dumps({"model": model_id}).encode())
    return f"{fleet}/models/{model_id}"


def _write(fs: Any, root: str, dest: str, data: bytes) -> None:
    """Staged then moved: a rename (local) or a server-side copy (S3), so readers see old or new, never half."""
    staged = f"{root}/.staged.{os.getpid()}"
    with fs.open(staged, "wb") as f:
        f.write(data)
    fs.mv(staged, dest)


def fetch_model(fleet: str, model_id: str, cache: Path) -> Path:
    """Model `model_id` of the fleet, downloaded once into `cache/<model id>`: complete and matching its manifest, or
    absent (a mismatch raises BackendUnavailable, so the caller keeps its model and tries again later)."""
    local = cache / model_id
    if (local / MANIFEST).is_file():
        return local
    fs, root = fsspec.core.url_to_fs(fleet.rstrip("/"))
    source = f"{root}/models/{model_id}"
    files = read_remote_json(f"{fleet.rstrip('/')}/models/{model_id}/{MANIFEST}")
    if files is None:
        raise BackendUnavailable(f"{fleet}: model {model_id} is incomplete in storage (no {MANIFEST}); "
                                 "publish it with `labelsieve deploy MODEL_DIR --to URL`")
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=cache))
    try:
        for name, expected in files.items():
            dest = partial / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{source}/{name}", str(dest))
            got: dict[str, Any] = {"size": dest.stat().st_size, "sha256": _digest(dest)}
            if got != expected:
                raise BackendUnavailable(f"{fleet}: model {model_id}'s {name} does not match its manifest ({got['size']} "
                                         f"bytes, sha256 {got['sha256'][:12]}; expected {expected['size']} bytes, sha256 "
                                         f"{str(expected['sha256'])[:12]}); not cached, the current model keeps serving")
        (partial / MANIFEST).write_text(json.dumps(files))
        shutil.rmtree(local, ignore_errors=True)  # a cache entry from before manifests, unverified: replaced
        try:
            os.replace(partial, local)
        except OSError:
            if not (local / MANIFEST).is_file():  # else another process fetched it first: use theirs
                raise
    except BackendUnavailable:
        raise
    except Exception as exc:  # as in read_remote_json: any backend's error means the storage failed us
        raise BackendUnavailable(f"cannot download model {model_id} from {fleet}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return local
