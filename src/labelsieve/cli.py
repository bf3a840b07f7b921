"""`labelsieve` command line: a thin shell over the Python API (same words as config keys and keyword arguments)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from labelsieve.errors import LabelsieveError

__all__ = ["main"]

log = logging.getLogger("labelsieve")

EXAMPLES = """examples:
  labelsieve run configs/demo.json                      serve on 127.0.0.1:8080, reload on edits
  labelsieve run configs/demo.json --host 0.0.0.0 --port 9090   (set LABELSIEVE_API_KEY to require a key)
  labelsieve validate configs/demo.json                 check everything, start nothing
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelsieve", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run a machine config: modules, resources and a robot API listener"),
                       ("validate", "validate a machine config, including each module's own checks, then exit")):
        p = sub.add_parser(name, help=text, description=text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("config", type=Path, help="machine config JSON (viam-server's shape)")
        p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LABELSIEVE_HOME", Path.home() / ".labelsieve")),
                       help="VIAM_HOME for modules; module data (weights caches) goes under it (default ~/.labelsieve)")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run = sub.choices["run"]
    run.add_argument("--host", default="127.0.0.1", help="listen address for SDK clients (default: localhost only)")
    run.add_argument("--port", type=int, default=8080, help="listen port (0 picks a free one)")
    run.add_argument("--api-key", default=os.environ.get("LABELSIEVE_API_KEY"),
                     help="require this API key from clients (prefer the LABELSIEVE_API_KEY variable: argv is visible to ps)")
    run.add_argument("--api-key-id", default=os.environ.get("LABELSIEVE_API_KEY_ID"), help="require this key id as auth entity")
    run.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) for the client listener")
    run.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert (if not inside it)")
    run.add_argument("--no-watch", dest="watch_config", action="store_false", help="do not apply config file edits live")
    return parser


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


async def _run(args: argparse.Namespace) -> int:
    from labelsieve.runtime import RuntimeOptions, Supervisor

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        log.warning("listening on %s with no API key: anyone who can reach this port controls the machine", args.host)
    options = RuntimeOptions(args.config.resolve(), args.host, args.port, args.api_key, args.api_key_id,
                             args.tls_cert, args.tls_key, args.data_dir, args.watch_config)
    supervisor = Supervisor(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: killing modules now")
            supervisor.kill()
            os._exit(130)
        log.info("stopping (signal again to force)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        start = asyncio.create_task(supervisor.start())
        await asyncio.wait([start, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        if start.cancelled():
            return 130
        start.result()
        print(_connect_hint(supervisor.address, args.api_key_id, bool(args.api_key), bool(args.api_key or args.tls_cert)),
              flush=True)
        await supervisor.run_until(stop)
        return 0
    finally:
        await supervisor.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _validate(args: argparse.Namespace) -> int:
    from labelsieve.runtime import RuntimeOptions, Supervisor

    config = await Supervisor(RuntimeOptions(args.config.resolve(), data_dir=args.data_dir, watch_config=False)).validate()
    print(f"{args.config}: valid ({len(config.modules)} modules, {len(config.resources)} resources)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        return asyncio.run({"run": _run, "validate": _validate}[args.command](args))
    except (LabelsieveError, OSError, ssl.SSLError) as exc:  # a user's mistake gets one clear line, not a traceback
        print(f"labelsieve {args.command}: {args.config}:\n{exc}" if "\n" in str(exc) else f"labelsieve {args.command}: {exc}",
              file=sys.stderr)
        return 2
