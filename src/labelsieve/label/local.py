"""The backlog job on one machine: an asyncio pipeline whose stages overlap.

    reader thread (read, decode, gate per stream in order) -> bounded queue
      -> proposer (one batch at a time: the detector's batch, or concurrent calls to a module)
      -> per frame: crops verified, decision, file written, ledger row        (up to `in_flight` frames at once)

The proposer works on the next frames while earlier frames' crops are being verified, so a frame costs the slowest
stage, not the sum of both. Backpressure: the reader blocks on the full queue, the proposer on the `in_flight` slots.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack
from pathlib import Path

from labelsieve.detections import Detections
from labelsieve.errors import LabelsieveError
from labelsieve.filter import Frame
from labelsieve.label.job import Output, Pending, decoded, gated, label_frame, propose
from labelsieve.label.ledger import Ledger, Record
from labelsieve.label.sources import Stream
from labelsieve.label.stages import Stages, StageSpec, open_stages, start_runtime

__all__ = ["run_local"]


class _Stopped(LabelsieveError):
    """The pipeline ended early (an error or Ctrl-C): the reader thread stops too."""


async def run_local(spec: StageSpec, streams: Sequence[Stream], finished: Mapping[str, Mapping[str, bytes | None]],
                    ledger: Ledger, output: Output, advance: Callable[[int], object], *, data_dir: Path,
                    in_flight: int = 8) -> None:
    async with AsyncExitStack() as exits:
        spec = await start_runtime(spec, data_dir, exits)
        stages = await open_stages(spec, exits)
        await _pipeline(stages, streams, finished, ledger, output, advance, in_flight)


async def _pipeline(stages: Stages, streams: Sequence[Stream], finished: Mapping[str, Mapping[str, bytes | None]],
                    ledger: Ledger, output: Output, advance: Callable[[int], object], in_flight: int) -> None:
    config, batch_size = stages.config, max(1, stages.proposer.batch_size)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Pending | None] = asyncio.Queue(maxsize=max(in_flight, batch_size))
    stop = threading.Event()

    def put(item: Pending | None) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                return future.result(timeout=1.0)
            except FutureTimeout:
                if stop.is_set():
                    future.cancel()
                    raise _Stopped from None

    def read() -> None:
        try:
            for stream in streams:
                for item in gated(stream, finished.get(stream.name, {}), config.duplicate_threshold):
                    if stop.is_set():
                        raise _Stopped
                    if isinstance(item, Pending):
                        put(item)
                        continue
                    if isinstance(item, Record):
                        ledger.record([item])
                    advance(1)
        finally:
            if not stop.is_set():
                put(None)

    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def finish(pending: Pending, frame: Frame, proposals: Detections | BaseException, propose_s: float) -> None:
        try:
            record = await label_frame(config, output, pending, frame, proposals, stages.verifier.verify, propose_s)
            await asyncio.to_thread(ledger.record, [record])
            advance(1)
        finally:
            slots.release()

    reader = asyncio.ensure_future(asyncio.to_thread(read))
    try:
        ended = False
        while not ended:
            await slots.acquire()
            first = await queue.get()
            if first is None:
                slots.release()
                break
            batch = [first]
            while len(batch) < batch_size and not queue.empty() and not slots.locked():
                if (item := queue.get_nowait()) is None:
                    ended = True
                    break
                await slots.acquire()
                batch.append(item)
            frames = await asyncio.to_thread(decoded, batch)
            results, propose_s = await propose(stages.proposer, frames, config.detector_timeout)
            for pending, frame, proposals in zip(batch, frames, results):
                task = asyncio.create_task(finish(pending, frame, proposals, propose_s))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        await reader
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(reader, *tasks, return_exceptions=True)
