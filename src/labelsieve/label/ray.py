"""The backlog job on Ray Data: the same gate, decisions, files and ledger as on one machine, spread over a cluster.

    streams --read+gate (one task per stream, in order)--> proposer actor pool (a GPU each where the cluster has GPUs)
            --> verifier actor pool (crops, decision, capture file) --> the driver (ledger rows, progress)

Every actor builds its own stage from the same `StageSpec`, so in-process models load once per actor and a stage behind
a module is reached over the runtime the driver started (its address on this machine: with `--ray ADDRESS` every node
must reach it, or the stages must be labelsieve's own). Only the driver writes the ledger, after the file is in place;
an actor killed mid-batch is restarted and its batch retried (Ray Data's defaults for actor pools), rewriting the same
files.

Ray is imported here only: `pip install labelsieve[scale]`.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np

from labelsieve.detections import Detections
from labelsieve.errors import ConfigError
from labelsieve.label.job import Done, Output, Pending, decoded, gated, label_frame, propose
from labelsieve.label.ledger import Ledger, Record
from labelsieve.label.sources import Stream
from labelsieve.label.stages import StageSpec, open_stage, start_runtime

__all__ = ["run_ray"]

_GATE_BATCH = 8  # items per batch out of the gate (blocks still hold one frame each: see run_ray)


def _rows(items: Sequence[Any]) -> dict[str, Any]:
    column = np.empty(len(items), dtype=object)
    column[:] = [pickle.dumps(item) for item in items]
    return {"item": column}


def _items(batch: Mapping[str, Any]) -> list[Any]:
    return [pickle.loads(raw) for raw in batch["item"]]


def _portable(exc: BaseException) -> BaseException:
    """A stage's exception as one that survives pickling, read by the filter the same way (a timeout stays one)."""
    return exc if isinstance(exc, TimeoutError) else RuntimeError(str(exc) or type(exc).__name__)


def _gate(batch: Mapping[str, Any], threshold: float) -> Iterator[dict[str, Any]]:
    """One stream (with what the ledger says of it) read and gated in order, frame by frame."""
    for stream, finished in _items(batch):
        items: list[Any] = []
        for item in gated(stream, finished, threshold):
            items.append(item)
            if len(items) >= _GATE_BATCH:
                yield _rows(items)
                items = []
        if items:
            yield _rows(items)


class _Actor:
    """An event loop of its own and one stage, built once."""

    def __init__(self, spec: StageSpec, role: Any) -> None:
        self.loop, self.exits = asyncio.new_event_loop(), AsyncExitStack()
        self.stage = self.loop.run_until_complete(open_stage(spec, role, self.exits))
        self.config = spec.filter_config()

    def __del__(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.exits.aclose())
            self.loop.close()


class _Proposer(_Actor):
    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec, "proposer")

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        items = _items(batch)
        pending = [i for i in items if isinstance(i, Pending)]
        out: list[Any] = [i for i in items if not isinstance(i, Pending)]
        size = max(1, self.stage.batch_size)
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            found, seconds = self.loop.run_until_complete(self._propose(chunk))
            out += [(p, f if isinstance(f, Detections) else _portable(f), seconds) for p, f in zip(chunk, found)]
        return _rows(out)

    async def _propose(self, chunk: Sequence[Pending]) -> tuple[list[Detections | BaseException], float]:
        return await propose(self.stage, await asyncio.to_thread(decoded, chunk), self.config.detector_timeout)


class _Labeler(_Actor):
    def __init__(self, spec: StageSpec, output: Output) -> None:
        super().__init__(spec, "verifier")
        self.output = output

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        items = _items(batch)
        proposed = [i for i in items if isinstance(i, tuple)]
        records = self.loop.run_until_complete(self._label_all(proposed))
        return _rows([i for i in items if not isinstance(i, tuple)] + records)

    async def _label_all(self, proposed: Sequence[tuple[Pending, Detections | BaseException, float]]) -> list[Record]:
        """The batch's frames verified concurrently, as the local pipeline keeps several frames in flight."""
        return list(await asyncio.gather(*(self._label(*i) for i in proposed)))

    async def _label(self, pending: Pending, proposals: Detections | BaseException, propose_s: float) -> Record:
        (frame,) = await asyncio.to_thread(decoded, [pending])
        return await label_frame(self.config, self.output, pending, frame, proposals, self.stage.verify, propose_s)


class _RuntimeThread:
    """The machine config running on a loop of its own while the driver blocks on Ray, for stages behind modules."""

    def __init__(self, spec: StageSpec, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.exits = AsyncExitStack()
        self.thread = threading.Thread(target=self.loop.run_forever, name="label runtime", daemon=True)
        self.thread.start()
        self.spec = asyncio.run_coroutine_threadsafe(start_runtime(spec, data_dir, self.exits), self.loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.exits.aclose(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def _connect(address: str) -> None:
    import ray

    if ray.is_initialized():
        return
    if address != "auto":
        ray.init(address=address)
        return
    try:
        ray.init(address="auto")  # a running cluster
    except ConnectionError:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")  # none: a local one, listening on this machine only


def run_ray(spec: StageSpec, streams: Sequence[Stream], finished: Mapping[str, Mapping[str, bytes | None]],
            ledger: Ledger, output: Output, advance: Callable[[int], object], *, address: str, data_dir: Path,
            proposers: int | None = None, verifiers: int | None = None, actor_cpus: float = 1.0,
            batch_size: int = 4) -> None:
    """Pool sizes default to the cluster's resources: a proposer per GPU (else half the CPUs), half the CPUs verifying."""
    if spec.filter_config().student:
        raise ConfigError(spec.filter, "student", "--ray cannot keep each stream's frames in order, which the student "
                          "policy needs", "label this filter without --ray")
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError("label", "--ray", f"Ray is not installed ({exc})", "pip install labelsieve[scale]") from None
    _connect(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the job's own bar counts frames
    # One frame a block: frames are large and few a second, and a block of many would hold the next stage back until
    # all of them were done (Ray merges small outputs up to this many bytes).
    context.target_max_block_size = 1
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    half = max(1, int(cpus / 2 // actor_cpus) if actor_cpus else 1)
    runtime = _RuntimeThread(spec, data_dir)
    try:
        threshold = runtime.spec.filter_config().duplicate_threshold
        work = [{"item": pickle.dumps((s, finished.get(s.name, {})))} for s in streams]  # each stream ships its own part
        items = ray.data.from_items(work, override_num_blocks=max(1, len(streams)))
        # Reading and gating reserve no CPU: the pools hold the cluster's, and a gate waiting for one would starve them.
        gate = functools.partial(_gate, threshold=threshold)
        gated_rows = items.map_batches(gate, batch_size=1, num_cpus=0,
                                       compute=ray.data.TaskPoolStrategy(size=max(1, int(cpus))))
        proposed = gated_rows.map_batches(
            _Proposer, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=proposers or gpus or half),
            num_cpus=actor_cpus, num_gpus=1 if gpus else 0, fn_constructor_kwargs={"spec": runtime.spec})
        labeled = proposed.map_batches(
            _Labeler, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=verifiers or half),
            num_cpus=actor_cpus, fn_constructor_kwargs={"spec": runtime.spec, "output": output})
        for batch in labeled.iter_batches(batch_size=None, batch_format="numpy"):
            done = _items(batch)
            ledger.record([r for r in done if isinstance(r, Record)])
            advance(sum(isinstance(r, (Record, Done)) for r in done))
    finally:
        runtime.close()
