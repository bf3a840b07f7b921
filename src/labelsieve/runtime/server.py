"""The Server: runs a `Runtime` under a process's signals, as uvicorn's `Server` runs an app.

Signal handlers only record the signal; the loop acts on it. The first SIGINT/SIGTERM stops gracefully (also in the
middle of start-up); a second one kills every module at once. The original handlers are restored on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from labelsieve.runtime.machine import Runtime, RuntimeOptions

__all__ = ["Server"]

log = logging.getLogger("labelsieve.runtime")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server:
    def __init__(self, options: RuntimeOptions, on_ready: Callable[[Runtime], None] = lambda runtime: None) -> None:
        self.runtime = Runtime(options)
        self.on_ready = on_ready
        self.should_exit = asyncio.Event()

    def run(self) -> int:
        """Serve until a signal; the exit code (0 after a graceful stop, 130 when stopped during start-up)."""
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, self._handle_signal)
        grpclib_server = logging.getLogger("grpclib.server")
        quieted = grpclib_server.level == logging.NOTSET and not grpclib_server.isEnabledFor(logging.DEBUG)
        if quieted:  # 'Request was cancelled' at INFO each time a client hangs up mid-call: normal, not news
            grpclib_server.setLevel(logging.WARNING)
        try:
            start = asyncio.create_task(self.runtime.start())
            await asyncio.wait([start, asyncio.create_task(self.should_exit.wait())], return_when=asyncio.FIRST_COMPLETED)
            if not start.done():
                start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            if start.cancelled():
                return 130
            start.result()
            self.on_ready(self.runtime)
            await self.runtime.run_until(self.should_exit)
            return 0
        finally:
            await self.runtime.shutdown()
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)
            if quieted:
                grpclib_server.setLevel(logging.NOTSET)

    def _handle_signal(self) -> None:
        if self.should_exit.is_set():
            log.warning("second signal: killing modules now")
            self.runtime.kill()
            os._exit(130)
        log.info("stopping (signal again to force)")
        self.should_exit.set()
