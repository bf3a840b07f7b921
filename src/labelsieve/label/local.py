"""The backlog job on one machine: an asyncio pipeline whose stages overlap.

    reader thread (read, decode, gate per stream in order) -> bounded queue
      -> proposer (one batch at a time: the detector's batch, or concurrent calls to a module)
      -> per frame: crops verified, decision, file written, ledger row        (up to `in_flight` frames at once)

The proposer works on the next frames while earlier frames' crops are being verified, so a frame costs the slowest
stage, not the sum of both. Backpressure: the reader blocks on the full queue, the proposer on the `in_flight` slots.

With the filter's `student` (active learning, `labelsieve.filter.student`) the policy must see each stream's frames in
time order (novelty and the repeat rule are per stream), so each stream runs its frames one at a time, student then
teacher where the policy asks, and up to `in_flight` streams run at once; a frame the policy skips is done (the ledger
records it as `student_skipped`), a kept one is written with the student's record in its first box's provenance.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack
from pathlib import Path

import dataclasses
import time
from typing import Any

from labelsieve.detections import Detections
from labelsieve.errors import LabelsieveError
from labelsieve.filter import AutoLabelFilter, Frame
from labelsieve.filter.student import StudentPolicy, StudentStats
from labelsieve.label.job import Output, Pending, decoded, gated, label_frame, propose
from labelsieve.label.ledger import FAILED, Ledger, Record
from labelsieve.label.sources import Stream
from labelsieve.label.stages import Stages, StageSpec, Student, open_stages, open_student, start_runtime

__all__ = ["run_local"]


class _Stopped(LabelsieveError):
    """The pipeline ended early (an error or Ctrl-C): the reader thread stops too."""


async def run_local(spec: StageSpec, streams: Sequence[Stream], finished: Mapping[str, Mapping[str, bytes | None]],
                    ledger: Ledger, output: Output, advance: Callable[[int], object], *, data_dir: Path,
                    in_flight: int = 8) -> dict[str, Any] | None:
    """Returns the student policy's stats, summed over the streams (None without a student)."""
    async with AsyncExitStack() as exits:
        spec = await start_runtime(spec, data_dir, exits)
        stages = await open_stages(spec, exits)
        student = await open_student(spec, exits)
        if student is None:
            await _pipeline(stages, streams, finished, ledger, output, advance, in_flight)
            return None
        slots = asyncio.Semaphore(in_flight)

        async def one(stream: Stream) -> StudentStats:
            async with slots:
                return await _student_stream(stages, student, stream, finished.get(stream.name, {}), ledger, output,
                                             advance)

        async with asyncio.TaskGroup() as group:  # one stream's error (or Ctrl-C) stops the others before stages close
            tasks = [group.create_task(one(s)) for s in streams]
        return _summed([t.result() for t in tasks]).as_dict()


def _summed(all_stats: Sequence[StudentStats]) -> StudentStats:
    total = StudentStats()
    for stats in all_stats:
        for field in dataclasses.fields(StudentStats):
            mine, theirs = getattr(total, field.name), getattr(stats, field.name)
            if isinstance(mine, dict):
                for key, value in theirs.items():
                    mine[key] = mine.get(key, 0) + value
            else:
                setattr(total, field.name, mine + theirs)
    return total


async def _student_stream(stages: Stages, student: Student, stream: Stream, finished: Mapping[str, bytes | None],
                          ledger: Ledger, output: Output, advance: Callable[[int], object]) -> StudentStats:
    """One stream in time order through the gate and the student policy."""
    config = stages.config

    async def proposed(frame: Frame) -> Detections:
        found = await stages.proposer.propose([frame])
        return found[0]

    teacher = AutoLabelFilter(config, proposed, stages.verifier.verify, proposer_name=config.detector,
                              verifier_name=config.verifier)
    policy = StudentPolicy(config, student, teacher)
    items = gated(stream, finished, config.duplicate_threshold)
    while (item := await asyncio.to_thread(next, items, None)) is not None:
        if isinstance(item, Record):
            await asyncio.to_thread(ledger.record, [item])
        if isinstance(item, Pending):
            await asyncio.to_thread(ledger.record, [await _chosen(policy, output, item)])
        advance(1)
    return policy.stats


async def _chosen(policy: StudentPolicy, output: Output, pending: Pending) -> Record:
    """The policy's decision on one frame; a kept frame is written with the teacher's labels and the student's record."""
    start = time.perf_counter()
    frame = (await asyncio.to_thread(decoded, [pending]))[0]
    chosen = await policy.examine(frame, gate=False)
    seconds = {"read": pending.read_s, "examine": time.perf_counter() - start}
    key, stream = pending.frame.key, pending.frame.stream
    if chosen.keep and chosen.teacher is not None:
        found = chosen.teacher.detections
        found.metadata["student"] = chosen.provenance
        written = await asyncio.to_thread(output.write, pending.frame, frame.image, chosen.teacher)
        return Record(key, stream, "kept", pending.reference, written, tuple(str(c) for c in found.class_name), "",
                      seconds)
    teacher = chosen.teacher
    if teacher is not None and teacher.outcome in FAILED:  # redone by the next run
        return Record(key, stream, teacher.outcome, pending.reference, "", (), "; ".join(teacher.reasons), seconds)
    why = ("the student was sure and the teacher was not needed" if teacher is None
           else "the teacher agreed with the student" if chosen.comparison is not None
           else "the teacher left a box unsettled")
    return Record(key, stream, "student_skipped", pending.reference, "", (), why, seconds)


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
