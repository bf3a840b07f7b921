"""The module pool: module processes, each with its own parent socket, and the restart policy that keeps them running.

A crashed module restarts with backoff (0.25 s doubling to `max_backoff`); after `max_restarts` crashes in a row, each
within `stable_after` s of its start, the pool gives up: its resources answer FAILED_PRECONDITION at once, saying so,
until a config edit retries it. Each failed restart is one log line; a traceback the module repeats is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from grpclib.server import Server

from labelsieve.errors import ConfigError, LabelsieveError
from labelsieve.retry import backoff
from labelsieve.runtime.config import ModuleConfig, ResourceConfig
from labelsieve.runtime.listener import DEFAULT_MAX_REQUEST_BYTES, make_server
from labelsieve.runtime.process import Dependencies, ModuleProcess, socket_path
from labelsieve.runtime.reaper import Reaper
from labelsieve.runtime.reflection import service_methods
from labelsieve.runtime.robot import RobotService
from labelsieve.runtime.routing import Forwarder, Link, Routes

__all__ = ["ModulePool", "Owner", "RestartPolicy"]

log = logging.getLogger("labelsieve.runtime")


class Owner(Protocol):
    """What serves resources: a module process, or the runtime's builtin host. The resource layer needs only this."""

    link: Link
    served: dict[str, set[str]]

    @property
    def name(self) -> str: ...

    def is_alive(self) -> bool: ...

    async def validate(self, resource: ResourceConfig) -> Dependencies: ...

    async def add(self, resource: ResourceConfig, dependencies: list[str]) -> None: ...

    async def reconfigure(self, resource: ResourceConfig, dependencies: list[str]) -> None: ...

    async def remove(self, resource: ResourceConfig) -> None: ...


@dataclass(frozen=True)
class RestartPolicy:
    max_backoff: float = 10.0
    max_restarts: int = 10
    stable_after: float = 30.0


@dataclass(eq=False)
class _Module:
    """One module in the pool: the Owner the resource layer talks to."""

    process: ModuleProcess
    link: Link
    parent: Server
    parent_socket: Path
    served: dict[str, set[str]] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None
    crashes: int = 0

    @property
    def name(self) -> str:
        return self.process.name

    def is_alive(self) -> bool:
        return self.process.is_alive()

    async def validate(self, resource: ResourceConfig) -> Dependencies:
        return await self.process.validate(resource)

    async def add(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        await self.process.add(resource, dependencies)

    async def reconfigure(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        await self.process.reconfigure(resource, dependencies)

    async def remove(self, resource: ResourceConfig) -> None:
        await self.process.remove(resource)


class ModulePool:
    def __init__(self, routes: Routes, forwarder: Forwarder, socket_dir: Path, data_dir: Path, config_dir: Path,
                 call_timeout: float, policy: RestartPolicy, lock: asyncio.Lock,
                 on_restart: Callable[[Owner], Awaitable[None]], max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.routes, self.forwarder = routes, forwarder
        self.socket_dir, self.data_dir, self.config_dir = socket_dir, data_dir, config_dir
        self.call_timeout, self.policy, self._lock, self._on_restart = call_timeout, policy, lock, on_restart
        self.max_request_bytes = max_request_bytes
        #: Only validating: modules' start-up output below WARNING is logged at DEBUG.
        self.quiet = False
        self.modules: dict[str, _Module] = {}
        #: Why each module that did not start did not, until it is started again or leaves the config.
        self.failed: dict[str, str] = {}
        self._reaper: Reaper | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.modules

    def alive(self) -> set[str]:
        return {name for name, m in self.modules.items() if m.is_alive()}

    async def start(self, configs: Iterable[ModuleConfig]) -> list[ConfigError]:
        """Start modules concurrently; a module that fails is stopped again and reported, the others keep running."""
        configs = list(configs)
        results = await asyncio.gather(*(self._start(c) for c in configs), return_exceptions=True)
        failures: list[ConfigError] = []
        for config, result in zip(configs, results):
            self.failed.pop(config.name, None)
            if isinstance(result, LabelsieveError):
                failures.append(ConfigError("", "", str(result)))
                await self.stop(config.name)
                self.failed[config.name] = str(result)
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _start(self, config: ModuleConfig) -> None:
        if self._reaper is None:
            self._reaper = Reaper()
        parent_socket = socket_path(self.socket_dir, f"{config.name}.parent.sock")
        parent = make_server([RobotService(self.routes, self.forwarder, config.name), self.forwarder],
                             max_request_bytes=self.max_request_bytes)
        await parent.start(path=str(parent_socket))
        process = ModuleProcess(config, self.socket_dir, self.data_dir, self.config_dir, self.call_timeout,
                                on_spawn=self._reaper.track, quiet=self.quiet)
        module = self.modules[config.name] = _Module(process, Link(config.name), parent, parent_socket)
        await self._boot(module)
        module.link.set_up(True)
        module.watcher = asyncio.create_task(self._watch(module))

    async def _boot(self, module: _Module) -> None:
        try:
            await module.process.start()
            module.link.channel = module.process.channel
            ready = await module.process.ready(str(module.parent_socket))
            for api, (service, _) in ready.items():
                if not self.forwarder.knows(api):
                    self.forwarder.learn(api, await service_methods(module.process.channel, service, module.name))
                    log.info("module '%s' serves its own API %s (%s)", module.name, api, service)
            module.served = {api: models for api, (_, models) in ready.items()}
        except LabelsieveError:
            await module.process.stop()  # a live process that failed Ready would never be noticed by its watcher
            raise
        log.info("module '%s' ready, serving %s", module.name,
                 ", ".join(f"{m} ({api})" for api, models in module.served.items() for m in sorted(models)))

    async def stop(self, name: str) -> None:
        """Stop a module (one that failed to start is not running: nothing to do but forget why)."""
        self.failed.pop(name, None)
        if (module := self.modules.get(name)) is None:  # listed until it is gone: a forced shutdown can still kill it
            return
        if module.watcher is not None:
            module.watcher.cancel()
            await asyncio.gather(module.watcher, return_exceptions=True)
        module.link.set_up(False)
        await module.process.stop()
        self._untrack(module)
        module.parent.close()
        await module.parent.wait_closed()
        del self.modules[name]

    def _untrack(self, module: _Module) -> None:
        if self._reaper is not None and module.process.pid is not None:
            self._reaper.untrack(module.process.pid)

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.modules)))
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

    def kill(self) -> None:
        """Forced shutdown: SIGKILL every module now, without waiting for anything."""
        for module in self.modules.values():
            module.process.kill()

    async def _watch(self, module: _Module) -> None:
        """Restart the module whenever it exits, with backoff; give up after too many quick crashes in a row."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            code = await module.process.wait()
            module.link.set_up(False)
            self._untrack(module)
            module.crashes = module.crashes + 1 if loop.time() - started < self.policy.stable_after else 1
            if module.crashes > self.policy.max_restarts:
                reason = (f"module '{module.name}' crashed {module.crashes - 1} times in a row, each within "
                          f"{self.policy.stable_after:.0f} s of starting, and the runtime gave up on it (last exit code "
                          f"{code}); fix it, then save the config file to retry")
                log.error("%s", reason)
                module.link.give_up(reason)
                return
            delay = backoff(module.crashes - 1, self.policy.max_backoff)
            log.error("module '%s' exited with code %s; restarting in %.2f s (crash %d of at most %d in a row)",
                      module.name, code, delay, module.crashes, self.policy.max_restarts)
            await asyncio.sleep(delay)
            async with self._lock:
                started = loop.time()
                try:
                    await module.process.stop()  # the dead process's channel, output readers and socket
                    await self._boot(module)
                    await self._on_restart(module)  # its resources are added again before calls reach it
                    module.link.set_up(True)
                except LabelsieveError as exc:  # the next turn of the loop counts it as another crash
                    log.error("restarting module '%s' failed: %s", module.name, exc)
