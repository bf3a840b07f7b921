"""`labelsieve run CONFIG`: the embedded runtime: modules, resources and a robot API listener, reloading on edits."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from labelsieve.cli.common import add_machine_config, verb
from labelsieve.runtime.listener import DEFAULT_MAX_REQUEST_BYTES

__all__ = ["add"]

log = logging.getLogger("labelsieve")

EXAMPLES = """examples:
  labelsieve run configs/camera.json                      serve on 127.0.0.1:8080, reload on edits
  labelsieve run configs/camera.json --host 0.0.0.0 --port 9090   (set LABELSIEVE_API_KEY to require a key)
"""


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def _run(args: argparse.Namespace) -> int:
    from labelsieve.runtime import RuntimeOptions, Server

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        log.warning("listening on %s with no API key: anyone who can reach this port controls the machine", args.host)
    options = RuntimeOptions(args.config.resolve(), args.host, args.port, args.api_key, args.api_key_id,
                             args.tls_cert, args.tls_key, args.data_dir, args.watch_config,
                             max_request_bytes=args.max_request_bytes, strict=args.strict,
                             packages_dir=args.packages_dir)
    tls = bool(args.api_key or args.tls_cert)
    return Server(options, lambda runtime: print(_connect_hint(runtime.address, args.api_key_id, bool(args.api_key), tls),
                                                 flush=True)).run()
