"""A module's log records reach its parent on the event loop that owns the parent connection.

viam-sdk's module log handler (`viam.logging._ModuleHandler`) sends every record with `parent.log(...)` from a thread of
its own, on that thread's event loop, over the parent `RobotClient`'s channel: the channel the module's dependency
clients use on the module's main loop. A grpclib channel belongs to one loop (its connect lock binds to the first loop that
waits on it), so a record sent while a dependency call was connecting failed that call with "Lock ... is bound to a
different event loop": under 8 concurrent filter streams that logged, 2 calls in ~1,000 lost their frame.

The SDK builds the handler itself when the module connects (`viam.logging.setParent`), with no hook to pass another, so
`send_logs_on_the_parent_loop()` replaces the class it builds. The replacement changes one thing: the send runs on the
loop that was running when the handler was made (the module's main loop, where the SDK connects to the parent); records,
levels, formatting and the SDK's own fallback to stderr are the SDK's. Only module processes make this handler (a
process without a parent never does), so nothing else in a process changes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from viam import logging as viam_logging

__all__ = ["ParentLoopHandler", "send_logs_on_the_parent_loop"]


class ParentLoopHandler(viam_logging._ModuleHandler):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        try:
            self._owner: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside any loop: no loop owns the connection yet, so the SDK's way is as good
            self._owner = None
        self._sending: set[asyncio.Task[None]] = set()

    async def _asynchronously_emit(self, record: Any, name: str, message: str, stack: str, time: datetime) -> None:
        owner = self._owner
        if owner is None or owner.is_closed():
            await super()._asynchronously_emit(record, name, message, stack, time)
            return
        owner.call_soon_threadsafe(self._send, name, record.levelname, time, message, stack)

    def _send(self, name: str, level: str, time: datetime, message: str, stack: str) -> None:
        """On the owner loop: one task per record, kept until done (a log that cannot be sent is dropped, as the SDK's)."""
        task = asyncio.ensure_future(self._parent.log(name, level, time, message, stack))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it: the parent may be gone at shutdown


def send_logs_on_the_parent_loop() -> None:
    """Make every module log handler the SDK builds from now on a `ParentLoopHandler`; call before the module connects."""
    viam_logging._ModuleHandler = ParentLoopHandler  # type: ignore[misc]
