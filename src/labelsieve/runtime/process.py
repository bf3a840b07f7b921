"""One module's OS process, started exactly as viam-server starts it, and the module protocol spoken to it."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from grpclib.client import Channel
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from viam.proto.app.robot import ComponentConfig
from viam.proto.module import (
    AddResourceRequest,
    ModuleServiceStub,
    ReadyRequest,
    ReconfigureResourceRequest,
    RemoveResourceRequest,
    ValidateConfigRequest,
)
from viam.utils import dict_to_struct

from labelsieve.viam.h2 import BoundedChannel
from labelsieve.errors import ModuleError
from labelsieve.runtime.config import ModuleConfig, ResourceConfig
from labelsieve.runtime.routing import PassThroughCodec

__all__ = ["VALIDATE_TIMEOUT_S", "Dependencies", "ModuleProcess", "component_config", "socket_path"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The Python SDK's own line format before a module reaches its parent: "<date> <time>\t\t<LEVEL>\t<rest>".
_SDK_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(.*)$")
_SOCKET_MAX = 103
_PR_SET_PDEATHSIG = 1
#: viam-server gives a module's ValidateConfig 5 s; a check that passes here must pass there.
VALIDATE_TIMEOUT_S = 5.0
#: Variables of the runtime itself that a module (perhaps a third party's) has no business reading.
_PRIVATE_ENV = ("LABELSIEVE_API_KEY", "LABELSIEVE_API_KEY_ID")
T = TypeVar("T")

_prctl: Callable[..., int] | None
try:  # resolved here, not in the forked child, where loading a library can deadlock
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc Linux: modules then rely on their own parent checks
    _prctl = None


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the runtime dies, even by SIGKILL, so no module outlives it."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def socket_path(folder: Path, name: str) -> Path:
    path = folder / name
    if len(str(path)) > _SOCKET_MAX:
        raise ModuleError(f"socket path {path} is over {_SOCKET_MAX} characters; use a shorter module name")
    return path


def component_config(resource: ResourceConfig) -> ComponentConfig:
    config = ComponentConfig(name=resource.name, api=resource.api, model=resource.model,
                             attributes=dict_to_struct(dict(resource.attributes)), depends_on=list(resource.depends_on))
    if resource.log_level:
        config.log_configuration.level = resource.log_level
    return config


@dataclass(frozen=True)
class Dependencies:
    """What a resource's `validate_config` named: required ones must exist; optional ones are passed when they do."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


class _OutputLog:
    """Turns a module's output into log records. stdout lines in the SDK's own format keep their level, other stdout is
    INFO; stderr is at least WARNING (Python's last-resort handler writes a module's warnings there, unprefixed), and a
    traceback becomes one ERROR record instead of one record per line, logged once however often a crash-looping module
    repeats it (`seen` outlives the process, across restarts). `quiet` (while only validating) logs what is below WARNING
    at DEBUG: a module's start-up chatter ("Serving on <socket>") is not the user's business then."""

    def __init__(self, log: logging.Logger, floor: int, seen: set[str], quiet: bool = False) -> None:
        self.log, self.floor, self.seen, self.quiet = log, floor, seen, quiet
        self._traceback: list[str] = []

    def _log(self, level: int, text: str) -> None:
        self.log.log(logging.DEBUG if self.quiet and level < logging.WARNING else level, "%s", text)

    def line(self, raw: str) -> None:
        text = _ANSI.sub("", raw).rstrip()
        if self._traceback:
            self._traceback.append(text)
            if text and not text[0].isspace():  # the exception line closes the traceback
                self.flush()
            return
        if not text.strip():
            return
        if text.startswith("Traceback (most recent call last)"):
            self._traceback = [text]
        elif m := _SDK_LINE.match(text.strip()):
            self._log(max(logging.getLevelNamesMapping()[m.group(1)], self.floor), m.group(2).replace("\t", " ").strip())
        else:
            self._log(self.floor, text.strip())

    def flush(self) -> None:
        if self._traceback:
            text, self._traceback = "\n".join(self._traceback), []
            if text in self.seen:
                self.log.debug("the same traceback again: %s", text.splitlines()[-1])
            else:
                self.seen.add(text)
                self.log.error("%s", text)


class ModuleProcess:
    """start / wait / stop for one module, plus the ModuleService calls the runtime makes to it."""

    def __init__(self, config: ModuleConfig, socket_dir: Path, data_dir: Path, config_dir: Path, timeout: float,
                 on_spawn: Callable[[int], None] = lambda pid: None, quiet: bool = False) -> None:
        self.config = config
        self.quiet = quiet
        self.config_dir = config_dir
        self.socket = socket_path(socket_dir, f"{config.name}.sock")
        self.data_dir = data_dir / "module-data" / config.name
        self.home = data_dir
        self.timeout = timeout
        self.on_spawn = on_spawn
        self.log = logging.getLogger(f"labelsieve.module.{config.name}")
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._tracebacks: set[str] = set()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def channel(self) -> Channel:
        assert self._channel is not None, "module not started"
        return self._channel

    @property
    def stub(self) -> ModuleServiceStub:
        return ModuleServiceStub(self.channel)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait(self) -> int | None:
        """Until the module's own process exits. Not `Process.wait()`: on 3.11 that also waits for every holder of the
        output pipe, so a helper process the module left behind would hide its crash."""
        assert self._proc is not None
        if self._proc.returncode is None:
            try:
                fd = os.pidfd_open(self._proc.pid)
            except ProcessLookupError:  # already gone
                fd = None
            except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): the pipe-bound wait is the fallback
                return await self._proc.wait()
            if fd is not None:
                loop = asyncio.get_running_loop()
                exited: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, lambda: None if exited.done() else exited.set_result(None))
                try:
                    await exited
                finally:
                    loop.remove_reader(fd)
                    os.close(fd)
        self._kill_group(signal.SIGKILL)  # its orphans too, which also closes the output pipes
        return await self._proc.wait()

    async def start(self) -> None:
        """Spawn with viam-server's argv and environment, then wait until the module's socket accepts connections."""
        self.socket.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        exe = self.config.executable_path
        env = {
            **{k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV},
            "VIAM_HOME": str(self.home),
            "VIAM_MODULE_DATA": str(self.data_dir),
            "VIAM_MODULE_NAME": self.config.name,
            "VIAM_MODULE_ID": self.config.name,
            "VIAM_MODULE_ROOT": str(exe.parent),
            "LABELSIEVE_CONFIG_DIR": str(self.config_dir),  # relative paths in attributes resolve against it
            **self.config.env,
        }
        argv = [str(exe), str(self.socket)]
        if self.config.log_level == "debug":
            argv.append("--log-level=debug")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, cwd=exe.parent, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent, start_new_session=True,
            )
        except OSError as exc:
            raise ModuleError(f"module '{self.config.name}' could not be started ({exe}): {exc.strerror}; "
                              "is it a script with a #! line, or a binary for this machine?") from exc
        self.on_spawn(self._proc.pid)
        self._pumps = [asyncio.create_task(self._pump(stream, _OutputLog(self.log, floor, self._tracebacks, self.quiet)))
                       for stream, floor in ((self._proc.stdout, logging.INFO), (self._proc.stderr, logging.WARNING))]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not await self._accepts():  # the file appears at bind(), before listen(): probe with a real connect
            if not self.is_alive():
                raise ModuleError(f"module '{self.config.name}' exited with code {self._proc.returncode} before "
                                  f"opening its socket; see its output above ({exe})")
            if loop.time() > deadline:
                await self.stop()
                raise ModuleError(f"module '{self.config.name}' did not open {self.socket} within {self.timeout:.0f} s")
            await asyncio.sleep(0.02)
        self._channel = BoundedChannel(path=str(self.socket), codec=PassThroughCodec())

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.open_unix_connection(str(self.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        writer.close()
        await writer.wait_closed()
        return True

    @staticmethod
    async def _pump(stream: asyncio.StreamReader | None, sink: _OutputLog) -> None:
        """Read in chunks and split on '\\r' too: a progress bar writes no newline, and a stalled reader would block the
        module."""
        assert stream is not None
        pending = ""
        while chunk := await stream.read(65536):
            *lines, pending = re.split(r"[\r\n]", pending + chunk.decode(errors="replace"))
            for line in lines:
                sink.line(line)
            pending = pending[-65536:]
        sink.line(pending)
        sink.flush()

    def _kill_group(self, sig: int) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL now, for a forced shutdown (a second Ctrl-C)."""
        self._kill_group(signal.SIGKILL)
        self.socket.unlink(missing_ok=True)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the module's process group, SIGKILL after `timeout`, and remove its socket."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._proc is not None:
            self._kill_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), timeout)
            except TimeoutError:
                self.log.warning("did not exit %.0f s after SIGTERM; killing it", timeout)
                self._kill_group(signal.SIGKILL)
                await self._proc.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self.socket.unlink(missing_ok=True)

    # The module protocol. Each call maps a transport failure to a ModuleError naming the module and the step.

    async def ready(self, parent_address: str) -> dict[str, tuple[str, set[str]]]:
        """Ready -> {api: (its protobuf service, {models})} the module serves."""
        response = await self._call("Ready", self.stub.Ready(
            ReadyRequest(parent_address=parent_address, raw_parent_address=parent_address), timeout=self.timeout))
        if not response.ready:
            raise ModuleError(f"module '{self.config.name}' reported not ready")
        served: dict[str, tuple[str, set[str]]] = {}
        for handler in response.handlermap.handlers:
            sub = handler.subtype.subtype
            api = f"{sub.namespace}:{sub.type}:{sub.subtype}"
            served.setdefault(api, (handler.subtype.proto_service, set()))[1].update(handler.models)
        return served

    async def validate(self, resource: ResourceConfig) -> Dependencies:
        """The module's own ValidateConfig -> implicit dependencies (short names). An invalid config is a GRPCError."""
        request = ValidateConfigRequest(config=component_config(resource))
        response = await self._call(f"ValidateConfig({resource.name})",
                                    self.stub.ValidateConfig(request, timeout=VALIDATE_TIMEOUT_S), passthrough=True)
        return Dependencies(tuple(response.dependencies), tuple(response.optional_dependencies))

    async def add(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        await self._call(f"AddResource({resource.name})", self.stub.AddResource(
            AddResourceRequest(config=component_config(resource), dependencies=dependencies), timeout=self.timeout))

    async def reconfigure(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        await self._call(f"ReconfigureResource({resource.name})", self.stub.ReconfigureResource(
            ReconfigureResourceRequest(config=component_config(resource), dependencies=dependencies), timeout=self.timeout))

    async def remove(self, resource: ResourceConfig) -> None:
        await self._call(f"RemoveResource({resource.name})",
                         self.stub.RemoveResource(RemoveResourceRequest(name=resource.resource_name), timeout=self.timeout))

    async def _call(self, step: str, call: Awaitable[T], *, passthrough: bool = False) -> T:
        """`passthrough` re-raises the module's own gRPC errors (ValidateConfig's message is the user's answer)."""
        try:
            return await call
        except GRPCError as exc:
            if passthrough:
                raise
            raise ModuleError(f"module '{self.config.name}' failed {step}: {exc.status.name}: {exc.message}") from exc
        except TimeoutError as exc:
            raise ModuleError(f"module '{self.config.name}' did not answer {step} in time") from exc
        except (OSError, ProtocolError, StreamTerminatedError) as exc:  # the module died mid-call
            raise ModuleError(f"module '{self.config.name}' did not answer {step}: {exc!r}") from exc
