"""The Supervisor: turns a machine config into running modules and resources, and keeps them so.

Lifecycle: `start()` (validate everything, open the client listener, add resources in dependency order) ->
`run_until(stop)` (restart crashed modules, apply config edits) -> `shutdown()` (no orphan process, no stale socket).
`validate()` runs only the checks and stops the modules again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from grpclib import GRPCError
from grpclib.server import Server

from labelsieve.errors import ConfigError, InvalidMachineConfig, LabelsieveError, ModuleError
from labelsieve.runtime.config import MachineConfig, ModuleConfig, ResourceConfig, dependency_order, load_config
from labelsieve.runtime.process import ModuleProcess, socket_path
from labelsieve.runtime.server import ApiKeyAuth, Forwarder, Link, RobotService, Routes, make_server
from labelsieve.runtime.tls import self_signed, server_context

__all__ = ["RuntimeOptions", "Supervisor"]

log = logging.getLogger("labelsieve.runtime")


@dataclass(frozen=True)
class RuntimeOptions:
    config_path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    api_key_id: str | None = None
    #: TLS for the client listener; with an API key and no certificate, a self-signed one is made for the run.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_dir: Path = Path.home() / ".labelsieve"
    watch_config: bool = True
    #: For every module call and for a module to open its socket; viam-server gives AddResource two minutes, which
    #: loading large weights needs.
    call_timeout: float = 120.0
    #: Restart policy: back off up to `max_backoff` s; give up after `max_restarts` crashes that each came within
    #: `stable_after` s of the previous start.
    max_backoff: float = 10.0
    max_restarts: int = 10
    stable_after: float = 30.0


@dataclass(eq=False)
class _Module:
    process: ModuleProcess
    link: Link
    parent: Server
    parent_socket: Path
    served: dict[str, set[str]] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None
    crashes: int = 0

    @property
    def name(self) -> str:
        return self.process.config.name


class Supervisor:
    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.config: MachineConfig | None = None
        self.address = ""
        self.routes = Routes()
        self.forwarder = Forwarder(self.routes)
        self._modules: dict[str, _Module] = {}
        self._implicit: dict[str, list[str]] = {}
        _sweep_stale_socket_dirs()
        self._socket_dir = Path(tempfile.mkdtemp(prefix=_SOCKET_PREFIX, dir="/tmp"))  # short: socket paths max ~103 chars
        (self._socket_dir / "runtime.pid").write_text(str(os.getpid()))
        self._client_server: Server | None = None
        self._lock = asyncio.Lock()  # one config change or restart at a time

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def validate(self) -> MachineConfig:
        """Everything `start` checks, with no resource added and no listener opened."""
        try:
            config = load_config(self.options.config_path)
            await self._checked(config)
            return config
        finally:
            await self.shutdown()

    async def start(self) -> None:
        try:
            async with self._lock:  # a module crashing meanwhile is restarted after, not during, start-up
                config = load_config(self.options.config_path)
                self._implicit = await self._checked(config)
                self.config = config
                _note_unsupported(config)
                await self._listen()  # before adding: a taken port should not cost minutes of weight loading
                for resource in dependency_order(config, self._implicit):
                    await self._add(resource)
        except BaseException:
            await self.shutdown()
            raise

    async def _listen(self) -> None:
        auth = ApiKeyAuth(self.options.api_key, self.options.api_key_id) if self.options.api_key else None
        server = make_server([RobotService(self.routes, self.forwarder), self.forwarder], auth)
        try:
            await server.start(self.options.host, self.options.port, ssl=self._tls())
        except OSError as exc:
            raise ModuleError(f"cannot listen on {self.options.host}:{self.options.port}: {exc.strerror}; "
                              "pick another --port (0 takes a free one)") from exc
        self._client_server = server
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.address = f"{self.options.host}:{port}"

    def _tls(self) -> ssl.SSLContext | None:
        cert, key = self.options.tls_cert, self.options.tls_key
        if cert is None and self.options.api_key:
            cert, key = self_signed(self._socket_dir, self.options.host)
            log.info("API key set: serving TLS with a self-signed certificate (%s); pass --tls-cert/--tls-key for your own", cert)
        return server_context(cert, key or cert) if cert else None

    async def run_until(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch_config()) if self.options.watch_config else None
        try:
            await stop.wait()
        finally:
            if watcher:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def shutdown(self) -> None:
        if self._client_server is not None:
            self._client_server.close()
            await self._client_server.wait_closed()
            self._client_server = None
        await asyncio.gather(*(self._stop_module(name) for name in list(self._modules)))
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def kill(self) -> None:
        """Forced shutdown: SIGKILL every module and remove the sockets, without waiting for anything."""
        for module in self._modules.values():
            module.process.kill()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    # -- modules ---------------------------------------------------------------------------------------------------

    async def _start_modules(self, modules: Iterable[ModuleConfig]) -> list[ConfigError]:
        """Start modules concurrently; a module that fails is stopped again and reported, the others keep running."""
        modules = list(modules)
        results = await asyncio.gather(*(self._start_module(m) for m in modules), return_exceptions=True)
        failures: list[ConfigError] = []
        for module, result in zip(modules, results):
            if isinstance(result, LabelsieveError):
                failures.append(ConfigError("", "", str(result)))
                if module.name in self._modules:
                    await self._stop_module(module.name)
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _start_module(self, config: ModuleConfig) -> None:
        parent_socket = socket_path(self._socket_dir, f"{config.name}.parent.sock")
        parent = make_server([RobotService(self.routes, self.forwarder, config.name), self.forwarder])
        await parent.start(path=str(parent_socket))
        process = ModuleProcess(config, self._socket_dir, self.options.data_dir, self.options.config_path.parent,
                                self.options.call_timeout)
        module = self._modules[config.name] = _Module(process, Link(config.name), parent, parent_socket)
        await self._boot(module)
        module.watcher = asyncio.create_task(self._watch_process(module))

    async def _boot(self, module: _Module) -> None:
        try:
            await module.process.start()
            module.link.channel = module.process.channel
            module.served = await module.process.ready(str(module.parent_socket))
        except LabelsieveError:
            await module.process.stop()  # a live process that failed Ready would never be noticed by its watcher
            raise
        log.info("module '%s' ready, serving %s", module.name,
                 ", ".join(f"{m} ({api})" for api, models in module.served.items() for m in sorted(models)))

    async def _stop_module(self, name: str) -> None:
        module = self._modules[name]  # listed until it is gone, so a forced shutdown meanwhile can still kill it
        if module.watcher is not None:
            module.watcher.cancel()
            await asyncio.gather(module.watcher, return_exceptions=True)
        module.link.up.clear()
        await module.process.stop()
        module.parent.close()
        await module.parent.wait_closed()
        del self._modules[name]

    async def _watch_process(self, module: _Module) -> None:
        """Restart a module that exits on its own, re-add its resources; dependents keep calling through the parent."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            code = await module.process.wait()
            module.link.up.clear()
            module.crashes = 1 if loop.time() - started > self.options.stable_after else module.crashes + 1
            if module.crashes > self.options.max_restarts:
                log.error("module '%s' crashed %d times in a row; not restarting it. Fix it, then edit the config "
                          "(any edit retries it) or restart labelsieve", module.name, module.crashes - 1)
                return
            delay = min(self.options.max_backoff, 0.25 * 2 ** (module.crashes - 1))
            log.error("module '%s' exited with code %s; restarting in %.2f s", module.name, code, delay)
            await asyncio.sleep(delay)
            async with self._lock:
                try:
                    await module.process.stop()  # the dead process's channel, output reader and socket
                    await self._boot(module)
                    for resource in self._resources_of(module.name):
                        await self._add(resource)
                except Exception:  # the next turn of the loop counts it as another crash
                    log.exception("restarting module '%s' failed", module.name)

    # -- resources -------------------------------------------------------------------------------------------------

    def _owner(self, resource: ResourceConfig) -> _Module | None:
        return next((m for m in self._modules.values() if resource.model in m.served.get(resource.api, ())), None)

    def _resources_of(self, module_name: str) -> list[ResourceConfig]:
        assert self.config is not None
        return [r for r in dependency_order(self.config, self._implicit)
                if (m := self._owner(r)) and m.name == module_name]

    async def _check_resources(self, names: set[str], resources: Iterable[ResourceConfig]
                               ) -> tuple[dict[str, list[str]], dict[str, ConfigError]]:
        """Served-model check and each module's ValidateConfig -> (implicit dependencies, problems by resource name).
        `names` are the resources the config will hold, which implicit dependencies must name."""
        implicit: dict[str, list[str]] = {}
        errors: dict[str, ConfigError] = {}
        for resource in resources:
            where = f"resource '{resource.name}'"
            owner = self._owner(resource)
            if owner is None:
                served = sorted(f"{m} ({api})" for mod in self._modules.values() for api, ms in mod.served.items() for m in ms)
                errors[resource.name] = ConfigError(where, "model", f"no module serves {resource.model} for {resource.api}",
                                                    f"served here: {', '.join(served) or 'nothing'}; add the module that provides it")
                continue
            try:
                deps = await owner.process.validate(resource)
            except GRPCError as exc:
                errors[resource.name] = ConfigError(where, "attributes", _validation_message(exc.message or "", resource.name))
                continue
            except ModuleError as exc:
                errors[resource.name] = ConfigError(where, "", str(exc))
                continue
            if missing := [d for d in deps if d not in names]:
                errors[resource.name] = ConfigError(where, "attributes", f"needs '{missing[0]}', which is not in the config",
                                                    "add that resource or fix the name")
            else:
                implicit[resource.name] = deps
        return implicit, errors

    async def _checked(self, config: MachineConfig) -> dict[str, list[str]]:
        """Start-up is all or nothing: every problem is raised together, and nothing is added."""
        if failures := await self._start_modules(config.modules):
            raise InvalidMachineConfig(failures)
        implicit, errors = await self._check_resources({r.name for r in config.resources}, config.resources)
        if errors:
            raise InvalidMachineConfig(list(errors.values()))
        dependency_order(config, implicit)
        return implicit

    def _dependencies(self, resource: ResourceConfig) -> list[str]:
        assert self.config is not None
        names = [*resource.depends_on, *self._implicit.get(resource.name, ())]
        return [self.config.resource(n).resource_name for n in dict.fromkeys(names)]

    async def _add(self, resource: ResourceConfig, *, reconfigure: bool = False) -> None:
        owner = self._owner(resource)
        assert owner is not None
        try:
            if reconfigure:
                await owner.process.reconfigure(resource, self._dependencies(resource))
            else:
                await owner.process.add(resource, self._dependencies(resource))
        except ModuleError as exc:
            log.error("%s", exc)
            self.routes.fail(resource.api, resource.name, str(exc))
            return
        self.routes.add(resource.api, resource.name, owner.link)
        owner.link.up.set()
        log.info("%s %s (%s)", "reconfigured" if reconfigure else "added", resource.name, resource.model)

    async def _remove(self, resource: ResourceConfig) -> None:
        owner = self._owner(resource)
        self.routes.remove(resource.api, resource.name)
        if owner is not None and owner.process.is_alive():
            try:
                await owner.process.remove(resource)
            except ModuleError as exc:
                log.warning("%s", exc)
        log.info("removed %s", resource.name)

    # -- config reload ---------------------------------------------------------------------------------------------

    async def _watch_config(self, interval: float = 0.5) -> None:
        """Poll the file (no inotify in the stdlib); apply a changed config; keep the old one where the new is invalid."""
        assert self.config is not None
        last = self.config.source
        while True:
            await asyncio.sleep(interval)
            try:
                current = self.options.config_path.read_bytes()
            except OSError:
                continue  # editors replace files by rename: a moment with no file is normal
            if current == last:
                continue
            last = current
            async with self._lock:
                try:
                    await self._reload()
                except LabelsieveError as exc:
                    log.error("config change not applied, still running the previous config:\n%s", exc)
                except Exception:  # a watcher that dies silently would ignore every later edit
                    log.exception("applying the config change failed; the machine may be partly updated")

    async def _reload(self) -> None:
        """Apply the file's current content: only what changed, plus what depends on it, plus retries of what failed.

        Checked before anything changes: the file (JSON, keys, names, cycles), that resources kept as they are still find
        their implicit dependencies, and the ValidateConfig of edited resources on modules that keep running. After that,
        every valid part is applied: a module that fails to start is reported, and a resource whose edit is invalid keeps
        its previous config (or, if it is new, is reported as failed and retried on the next edit).
        """
        assert self.config is not None
        old, new = self.config, load_config(self.options.config_path)
        old_mods, new_mods = {m.name: m for m in old.modules}, {m.name: m for m in new.modules}
        old_res, new_res = {r.name: r for r in old.resources}, {r.name: r for r in new.resources}
        owner_of = {r.name: m.name for r in old.resources if (m := self._owner(r))}
        dead = {n for n in new_mods if n not in self._modules or not self._modules[n].process.is_alive()}
        stopping = {n for n in old_mods if old_mods[n] != new_mods.get(n) or n in dead}
        # Removed, or moved to another API or model (perhaps another module): taken out of where they run now.
        leaving = {n for n in old_res if n not in new_res or
                   (old_res[n].api, old_res[n].model) != (new_res[n].api, new_res[n].model)}
        failed = self.routes.failed_names()
        fresh = {n for n in new_res if n not in old_res or n in leaving or n in failed or owner_of.get(n) in stopping}
        changed = {n for n in new_res if n not in old_res or new_res[n] != old_res[n]}

        # Plan on what runs now, before changing anything.
        names = set(new_res)
        for name in set(new_res) - changed:
            if missing := [d for d in self._implicit.get(name, ()) if d not in names]:
                raise ConfigError(f"resource '{name}'", "attributes", f"needs '{missing[0]}', which this edit removes",
                                  "keep that resource or change this one too")

        def keepable(name: str) -> bool:  # an invalid edit of it can fall back to what runs now
            return name in old_res and name not in leaving and owner_of.get(name) not in stopping

        def settled(errors: dict[str, ConfigError]) -> tuple[ResourceConfig, ...]:
            return tuple(old_res[r.name] if r.name in errors else r for r in new_res.values()
                         if r.name not in errors or keepable(r.name))

        now = [new_res[n] for n in changed | fresh if (m := self._owner(new_res[n])) and m.name not in stopping]
        implicit, errors = await self._check_resources(names, now)
        implicit = {**self._implicit, **implicit}
        dependency_order(replace(new, resources=settled(errors)), implicit)

        # Apply.
        self.routes.forget_failures(keep=names)
        for name in leaving:
            if owner_of.get(name) in stopping:
                self.routes.remove(old_res[name].api, name)
            else:
                await self._remove(old_res[name])
        for name in stopping:
            for r in old.resources:
                if owner_of.get(r.name) == name:
                    self.routes.remove(r.api, r.name)
            await self._stop_module(name)
            log.info("stopped module '%s'", name)
        for failure in await self._start_modules(m for n, m in new_mods.items() if n not in old_mods or n in stopping):
            log.error("%s", failure)
        later = [new_res[n] for n in changed | fresh if new_res[n] not in now]
        more_implicit, more_errors = await self._check_resources(names, later)
        implicit.update(more_implicit)
        errors.update(more_errors)

        for name, error in errors.items():
            log.error("config change for %s not applied, %s: %s", name,
                      "keeping its previous config" if keepable(name) else "it is not running", error)
            changed.discard(name)
            fresh.discard(name)
            if keepable(name):
                implicit[name] = self._implicit.get(name, [])
            else:
                self.routes.fail(new_res[name].api, name, str(error))
        new = replace(new, resources=settled(errors))
        new_res = {r.name: r for r in new.resources}
        self._implicit = {name: deps for name, deps in implicit.items() if name in new_res}
        self.config = new
        _note_unsupported(new)
        dirty = changed | fresh
        order = dependency_order(new, self._implicit)
        for r in order:  # dependents of anything touched are reconfigured after it
            if (set(r.depends_on) | set(self._implicit.get(r.name, ()))) & dirty:
                dirty.add(r.name)
        for r in order:
            if r.name in fresh:
                await self._add(r)
            elif r.name in dirty:
                await self._add(r, reconfigure=True)
        log.info("applied config change: %d resource(s) added or reconfigured, %d removed, %d module(s) (re)started",
                 len(dirty), len(set(old_res) - set(new_res)), len(set(new_mods) - set(old_mods)) + len(stopping & set(new_mods)))


_SOCKET_PREFIX = "ls-"


def _sweep_stale_socket_dirs() -> None:
    """A runtime killed with SIGKILL could not remove its sockets; the next one does, once their owner is gone."""
    for pid_file in Path("/tmp").glob(f"{_SOCKET_PREFIX}*/runtime.pid"):
        try:
            os.kill(int(pid_file.read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(pid_file.parent, ignore_errors=True)
        except (OSError, ValueError):  # not ours to judge: another user's, or being written right now
            continue


def _note_unsupported(config: MachineConfig) -> None:
    if config.ignored:
        log.warning("%s: ignoring %s (the embedded runtime takes listen address and keys from its command line)",
                    config.path.name, ", ".join(config.ignored))
    for r in config.resources:
        if r.service_configs:
            log.warning("resource '%s': service_configs are kept for viam-server; the embedded runtime captures no data", r.name)


def _validation_message(message: str, resource: str) -> str:
    """Drop the SDK's stray "<class 'type'>: " prefix and a repeated resource name."""
    message = message.removeprefix("<class 'type'>: ").strip()
    return message.removeprefix(f"{resource}: ")
