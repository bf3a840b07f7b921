"""The reaper: a small process that ends every module's whole process group once the runtime is gone, however it went.

`PR_SET_PDEATHSIG` reaches only a module's own process; a helper its start script spawned (a `sleep &` in `run.sh`)
would outlive a SIGKILLed runtime, adopted by init. The runtime writes each module's process group to the reaper's stdin;
the pipe closes when the runtime dies, even by SIGKILL, and the reaper then signals those groups and exits.

    python -I reaper.py      (stdin lines: "+<pgid>" when a module starts, "-<pgid>" when it is reaped)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

__all__ = ["Reaper"]


class Reaper:
    """The runtime's handle on the reaper process."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-I", __file__], stdin=subprocess.PIPE,  # imports nothing of ours
                                      start_new_session=True)  # not killed with the runtime's own group by a Ctrl-C

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.flush()
        except BrokenPipeError:  # the reaper died: modules still have PR_SET_PDEATHSIG
            pass

    def track(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def untrack(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        """Clean shutdown: every module was stopped, so the reaper has nothing left to do."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(5)


def _signal(groups: set[int], sig: int) -> set[int]:
    alive = set()
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
            alive.add(pgid)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        sign, value = line[:1], line[1:].strip()
        if value.isdigit():
            (groups.add if sign == "+" else groups.discard)(int(value))
    alive = _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = _signal(alive, 0)
    _signal(alive, signal.SIGKILL)


if __name__ == "__main__":
    main()
