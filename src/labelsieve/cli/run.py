"""`labelsieve run CONFIG`: the embedded runtime: modules, resources and a robot API listener, reloading on edits."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelsieve.cli.common import add_machine_config, verb
from labelsieve.runtime.listener import DEFAULT_MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from labelsieve.runtime import Runtime

__all__ = ["add"]

log = logging.getLogger("labelsieve")

EXAMPLES = """examples:
  labelsieve run configs/camera.json                      serve on 127.0.0.1:8080, reload on edits
  labelsieve run configs/camera.json --host 0.0.0.0 --port 9090   (set LABELSIEVE_API_KEY to require a key)
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = verb(sub, "run", "run a machine config: modules, resources and a robot API listener", EXAMPLES)
    add_machine_config(run)
    run.add_argument("--host", default="127.0.0.1", help="listen address for SDK clients (default: localhost only)")
    run.add_argument("--port", type=int, default=8080, help="listen port (0 picks a free one)")
    run.add_argument("--api-key", default=os.environ.get("LABELSIEVE_API_KEY"),
                     help="require this API key from clients (prefer the LABELSIEVE_API_KEY variable: argv is visible to ps)")
    run.add_argument("--api-key-id", default=os.environ.get("LABELSIEVE_API_KEY_ID"), help="require this key id as auth entity")
    run.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) for the client listener")
    run.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert (if not inside it)")
    run.add_argument("--no-watch", dest="watch_config", action="store_false", help="do not apply config file edits live")
    run.add_argument("--status-interval", type=float, default=30.0, metavar="SECONDS",
                     help="print a one-line capture status this often when it changed (default 30; 0: only at the end)")
    run.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                     help="refuse larger requests with RESOURCE_EXHAUSTED (default 64 MiB)")
    run.add_argument("--strict", action="store_true",
                     help="exit 2 unless every module starts and every resource validates (default: start what can "
                          "start, report the rest, retry it on the next config edit, as viam-server does)")
    run.set_defaults(handler=_run)


def _connect_hint(address: str, key_id: str | None, keyed: bool, tls: bool) -> str:
    options = ("" if tls else "insecure=True, ") + "disable_webrtc=True"
    if keyed:
        options += ", credentials=Credentials(type='api-key', payload=os.environ['LABELSIEVE_API_KEY'])"
        options += f", auth_entity='{key_id}'" if key_id else ""
    return (f"labelsieve: serving on {address}\n"
            "  connect from Python (viam-sdk):\n"
            "    from viam.robot.client import RobotClient\n"
            f"    from viam.rpc.dial import {'Credentials, ' if keyed else ''}DialOptions\n"
            f"    robot = await RobotClient.at_address('{address}', RobotClient.Options(\n"
            f"        dial_options=DialOptions({options})))\n"
            "  Ctrl-C stops (a second Ctrl-C forces).")


class _CaptureStatus:
    """The data managers' counts, as one line while running (only when they changed) and a summary when stopped: read
    from the running data managers' `stats()`, kept after they close so the summary has their final counts."""

    def __init__(self) -> None:
        self.managers: dict[str, Any] = {}  # name -> the data manager's capture core
        self._last = ""

    def refresh(self, runtime: Runtime) -> None:
        from labelsieve.runtime.builtins.data_manager import BuiltinDataManager

        self.managers.update({r.name: r.capture for r in runtime.builtins.instances() if isinstance(r, BuiltinDataManager)})

    def totals(self) -> str:
        stats = [m.stats() for m in self.managers.values()]
        methods = [counts for s in stats for counts in s["methods"].values()]
        return (f"captured {sum(c['captured'] for c in methods)}, dropped by the filter {sum(c['filtered'] for c in methods)}"
                f", errors {sum(c['errors'] for c in methods)}, synced {sum(s['files_synced'] for s in stats)}")

    async def follow(self, runtime: Runtime, stop: asyncio.Event, interval: float | None) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            self.refresh(runtime)  # a reload may have replaced a data manager
            line = self.totals()
            if self.managers and line != self._last and not stop.is_set():
                print(f"labelsieve: {line}", flush=True)
                self._last = line

    def summary(self) -> str:
        lines = []
        for name, manager in self.managers.items():
            stats = manager.stats()
            for key, c in stats["methods"].items():
                ended = f" (ended: {c['ended']})" if c["ended"] else ""
                lines.append(f"  {name}: {key}: {c['captured']} captured, {c['filtered']} dropped by the filter, "
                             f"{c['errors']} errors{ended}")
            lines.append(f"  {name}: {stats['files_synced']} files synced" + (f", {stats['recovered']} stuck files "
                                                                              "recovered" if stats["recovered"] else ""))
        return "\n".join([f"labelsieve: stopped; {self.totals()}", *lines]) if lines else ""


def _run(args: argparse.Namespace) -> int:
    from labelsieve.runtime import RuntimeOptions, Server

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        log.warning("listening on %s with no API key: anyone who can reach this port controls the machine", args.host)
    options = RuntimeOptions(args.config.resolve(), args.host, args.port, args.api_key, args.api_key_id,
                             args.tls_cert, args.tls_key, args.data_dir, args.watch_config,
                             max_request_bytes=args.max_request_bytes, strict=args.strict,
                             packages_dir=args.packages_dir)
    tls = bool(args.api_key or args.tls_cert)
    status, tasks = _CaptureStatus(), set[asyncio.Task[None]]()

    def ready(runtime: Runtime) -> None:
        print(_connect_hint(runtime.address, args.api_key_id, bool(args.api_key), tls), flush=True)
        status.refresh(runtime)
        interval = args.status_interval if args.status_interval > 0 else None
        tasks.add(asyncio.create_task(status.follow(runtime, server.should_exit, interval)))  # held until the loop ends

    server = Server(options, ready)
    code = server.run()
    if summary := status.summary():
        print(summary, flush=True)
    return code
