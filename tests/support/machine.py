"""Test helpers: `labelsieve run` as a real subprocess on a free port, and the official viam-sdk client against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import psutil
from grpclib import GRPCError
from viam.errors import ViamError
from viam.robot.client import RobotClient
from viam.rpc.dial import Credentials, DialOptions

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "modules"
TEST_MODULES = ROOT / "tests" / "modules"


def module(name: str, folder: Path | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "local", "name": name, "executable_path": str((folder or MODULES / name.replace("-", "_")) / "run.sh"), **extra}


def camera(name: str = "cam", **attributes: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:component:camera", "model": "labelsieve:camera:media", "attributes": attributes}


class Machine:
    """A running `labelsieve run CONFIG --port 0`; output is collected for assertions."""

    def __init__(self, config: dict[str, Any] | Path, tmp: Path, *, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, ready_timeout: float = 90.0) -> None:
        """`config` is a dict written to `tmp/machine.json`, or the path of a config file to run as it is."""
        if isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = tmp / "machine.json"
            self.write(config)
        self.lines: list[str] = []
        self.address = ""
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labelsieve", "run", str(self.config_path), "--port", "0", "--data-dir", str(tmp / "data"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(ready_timeout) or not self.address:
            self.stop()
            raise AssertionError(f"runtime did not become ready:\n{self.log}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("labelsieve: serving on "):
                self.address = line.split()[-1]
                self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def write(self, config: dict[str, Any]) -> None:
        """Atomic replace, as editors do, so the runtime never reads half a file."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, self.config_path)

    def module_pid(self, fragment: str) -> int:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if any(fragment in part for part in child.cmdline()):
                return child.pid
        raise AssertionError(f"no module process matching {fragment!r}")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def connect(address: str, api_key: str | None = None, key_id: str | None = None, tls: bool = False) -> RobotClient:
    """Plaintext by default; with a key (which the SDK sends only over TLS) or `tls`, over TLS."""
    creds = Credentials(type="api-key", payload=api_key) if api_key else None
    options = DialOptions(insecure=not (tls or api_key), disable_webrtc=True, credentials=creds, auth_entity=key_id)
    return await RobotClient.at_address(address, RobotClient.Options(dial_options=options, disable_sessions=True))


def validate(config: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    path = tmp / "machine.json"
    path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-m", "labelsieve", "validate", str(path), "--data-dir", str(tmp / "data")],
                          capture_output=True, text=True, timeout=120)


async def machine_status(address: str) -> dict[str, Any]:
    robot = await connect(address)
    try:
        return {s.name.name: s for s in (await robot.get_machine_status()).resources}
    finally:
        await robot.close()


async def eventually(check: Any, timeout: float = 20.0) -> Any:
    """Retry an async check until it passes: used only where the runtime is expected to recover or apply an edit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, GRPCError, ConnectionError, OSError, ViamError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
