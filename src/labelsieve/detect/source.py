"""Where the fast detector's model comes from, and how it is kept current: usable from a plain script as from the module.

`ModelSource` says which model `model_path` names now (a file, a model directory, or a fleet URL's `current` pointer,
see `labelsieve.fleet`) and where it lies locally. `WatchedModel` serves that model and polls the source on a thread:
a new model loads beside the serving one, must answer a frame (`load_model` checks it) and is swapped in only then, so
a broken file or an unreachable store leaves the current model serving, with one log line per problem.

    watched = WatchedModel("models/v3", poll_interval_s=2)
    watched.on_swap(lambda version, model: print("now serving", version))
    with watched:  # start() ... stop()
        version, model = watched.current()
        dets = model.detect(image, 0.25, 0.45, 100)
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Self

from labelsieve.attributes import resolve_path
from labelsieve.detect.fast import FastModel, load_model, pick_model_file
from labelsieve.errors import BackendUnavailable, LabelsieveError, ModelError
from labelsieve.fleet import POINTER, fetch_model, is_url, read_pointer
from labelsieve.models import ModelKey, ModelSlot
from labelsieve.files import write_atomic
from labelsieve.paths import module_data

__all__ = ["ModelSource", "SwapCallback", "WatchedModel"]

log = logging.getLogger(__name__)

#: Called with (version, model) each time a model starts serving, the first one included.
SwapCallback = Callable[[str, FastModel], None]
Served = tuple[str, FastModel]  # (the version it was loaded from, the model)


class ModelSource:
    """Which model `model_path` names now, in two steps: `version()` is cheap (a stat, or one read of the fleet pointer)
    and changes whenever the model does; `fetch(version)` returns the local model file, downloading a fleet model into
    the cache once. When the storage cannot be reached, the model fetched last keeps serving, across restarts too.
    """

    def __init__(self, model_path: str, cache: Path | None = None) -> None:
        self.model_path = model_path
        fleet = hashlib.sha256(model_path.encode()).hexdigest()[:12]  # services following other fleets keep apart
        self.cache = cache or module_data() / "fast-detector" / fleet
        self._remembered = self.cache / "current"
        self._fetching = threading.Lock()  # the first load and the watcher may ask for the same model at once
        self._offline = False

    @property
    def is_fleet(self) -> bool:
        return is_url(self.model_path)

    def version(self) -> str:
        if not self.is_fleet:
            try:
                file = pick_model_file(resolve_path(self.model_path))
                stat = file.stat()
            except OSError as exc:
                raise ModelError(f"cannot read model_path {self.model_path}: {exc}") from exc
            return f"{file.name}@{stat.st_mtime_ns}:{stat.st_size}"
        try:
            pointer = read_pointer(self.model_path)
        except BackendUnavailable as exc:
            if (cached := self.cached_version()) is None:
                raise
            if not self._offline:  # once per outage, not once per poll
                log.warning("serving the cached model %s: %s", cached, exc)
            self._offline = True
            return cached
        self._offline = False
        if pointer is None:
            raise ModelError(f"{self.model_path}: nothing deployed yet (no '{POINTER}' pointer); "
                             "run `labelsieve deploy MODEL_DIR --to URL`")
        return str(pointer["model"])

    def cached_version(self) -> str | None:
        """The version to serve at start without waiting on the network: a local file's, or the fleet model fetched last
        (None when there is none yet, or a local path is unreadable)."""
        if self.is_fleet:
            return self._remembered.read_text() if self._remembered.is_file() else None
        try:
            return self.version()
        except ModelError:
            return None

    def fetch(self, version: str) -> Path:
        if not self.is_fleet:
            return pick_model_file(resolve_path(self.model_path))
        with self._fetching:
            local = fetch_model(self.model_path, version, self.cache / "models")
            write_atomic(self._remembered, version)  # remembered only once the model is complete in the cache
        return pick_model_file(local)


class WatchedModel:
    """The model a `ModelSource` names, served from a `ModelSlot` and kept current by a watcher thread.

    `slot` is the module's process-wide slot (it survives a reconfigure's close/new pair); a script leaves it unset.
    Local files load once they look the same on two polls (a copy still being written is not read); fleet pointers at
    once (a deploy writes the model before the pointer)."""

    def __init__(self, model_path: str, *, device: str = "auto", poll_interval_s: float = 5.0,
                 name: str = "fast-detector", slot: ModelSlot[Served] | None = None, cache: Path | None = None) -> None:
        self.name, self.device, self.poll_interval_s = name, device, poll_interval_s
        self.source = ModelSource(model_path, cache)
        self.slot: ModelSlot[Served] = slot or ModelSlot(name)
        self._on_swap: list[SwapCallback] = []
        self._on_problem: list[Callable[[str], None]] = []
        self._stop = threading.Event()

    def on_swap(self, callback: SwapCallback) -> None:
        """Call `callback(version, model)` whenever a model starts serving (register before `start` to see the first)."""
        self._on_swap.append(callback)

    def on_problem(self, callback: Callable[[str], None]) -> None:
        """Call `callback(message)` once per distinct problem the watcher meets (a broken model, unreachable storage)
        while the current model keeps serving: what the log says, for a caller to act on."""
        self._on_problem.append(callback)

    def start(self) -> Self:
        """Load the model known without the network (a local file, or the fleet model fetched last) in the background,
        and start watching; returns at once."""
        self._load(self.source.cached_version())
        threading.Thread(target=self._watch, name=f"watch {self.name}", daemon=True).start()
        return self

    def current(self) -> Served:
        """(version, model) serving now, waiting for the first load; a failed first load raises its error."""
        return self.slot.get_sync()

    async def get(self) -> Served:
        return await self.slot.get()

    def stop(self) -> None:
        """Stop watching and release the slot (a module's slot keeps the model a grace period for a reconfigure)."""
        self._stop.set()
        self.slot.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _key(self, version: str) -> ModelKey:
        return ModelKey(model=self.source.model_path, device=self.device, extra=(("version", version),),
                        kind="fast-detector")

    def _install(self, key: ModelKey, factory: Callable[[], Served]) -> None:
        self.slot.load(key, factory).add_done_callback(self._announce)

    def _announce(self, future: Future[Served]) -> None:
        if future.exception() is None:
            self._notify(self._on_swap, *future.result())

    def _notify(self, callbacks: list[Callable[..., None]], *args: object) -> None:
        for callback in callbacks:
            try:
                callback(*args)
            except Exception:  # a caller's bug must not end the watcher or the load
                log.exception("%s: a callback failed", self.name)

    def _load(self, version: str | None) -> None:
        """Load `version`; None (nothing cached yet) asks the source on the loading thread, and the watcher's next poll
        then finds the real version and hands over from the cache at once."""
        def factory() -> Served:
            resolved = version or self.source.version()
            return resolved, load_model(self.source.fetch(resolved), self.device)

        self._install(self._key(version or "first"), factory)

    def _watch(self) -> None:
        seen, broken, problem = None, None, ""
        while not self._stop.wait(self.poll_interval_s):
            try:
                version = self.source.version()
                if self.slot.key == self._key(version) or version == broken or not (self.source.is_fleet or version == seen):
                    seen = version
                    continue
                seen = version
                log.info("%s: new model %s; loading it beside the current one", self.name, version)
                model = load_model(self.source.fetch(version), self.device)
            except LabelsieveError as exc:
                if str(exc) != problem:  # once per distinct problem, not once per poll
                    log.error("%s: still serving the current model: %s", self.name, exc)
                    self._notify(self._on_problem, str(exc))
                problem = str(exc)
                if not isinstance(exc, BackendUnavailable):
                    broken = seen  # a bad file is not retried until it changes again
                continue
            except Exception:  # a bug must not end the watcher: the next poll tries again
                log.exception("%s: checking for a new model failed; still serving the current model", self.name)
                continue
            problem = ""

            def ready(served: Served = (version, model)) -> Served:
                return served

            self._install(self._key(version), ready)
