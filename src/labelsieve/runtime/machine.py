"""The Runtime: one machine config made real. It composes the module pool (`modules.py`), the builtin host
(`builtins/`), the resource layer (`resources.py`), live reload (`reload.py`) and the client listener (`listener.py`).

Lifecycle: `start()` (open the client listener, start the modules, add what validates, in dependency order) ->
`run_until(stop)` (apply config edits; the pool restarts crashed modules) -> `shutdown()` (no orphan process, no stale
socket). `validate()` runs only the checks. Signals belong to `server.Server`, which drives this.

As viam-server, a machine starts what can start: a module that does not start, or a resource its owner rejects or cannot
add, is one ERROR line and an unhealthy entry in the machine status, and what depends on it fails naming it; the next
config edit retries them. `RuntimeOptions.strict` (`labelsieve run --strict`) and `validate()` refuse the whole config
instead, with every problem listed.

Nothing here is process-wide: the config and data folders and the request limit live in this object, so two runtimes
share a process (tests, eval, a Ray actor). Module processes get them in their environment, as viam-server gives them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from grpclib.server import Server
from viam.robot.client import RobotClient
from viam.rpc.dial import Credentials, DialOptions

from labelsieve.errors import InvalidMachineConfig, LabelsieveError, ModuleError
from labelsieve.runtime import reload
from labelsieve.paths import home
from labelsieve.runtime.builtins import BuiltinHost, MachineContext
from labelsieve.runtime.config import DEFAULT_PACKAGES_DIR, MachineConfig, dependency_order, load_config
from labelsieve.runtime.listener import DEFAULT_MAX_REQUEST_BYTES, ApiKeyAuth, make_server, self_signed, server_context
from labelsieve.runtime.modules import ModulePool, Owner, RestartPolicy
from labelsieve.runtime.process import Dependencies
from labelsieve.runtime.resources import Resources, present
from labelsieve.runtime.robot import RobotService
from labelsieve.runtime.routing import Forwarder, Routes

__all__ = ["Runtime", "RuntimeOptions"]

log = logging.getLogger("labelsieve.runtime")

_SOCKET_PREFIX = "ls-"


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
    data_dir: Path = field(default_factory=home)
    watch_config: bool = True
    #: For every module call and for a module to open its socket; viam-server gives AddResource two minutes, which
    #: loading large weights needs.
    call_timeout: float = 120.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    #: Larger requests are refused with RESOURCE_EXHAUSTED before they are buffered.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: Refuse to start unless every module starts and every resource validates (viam-server starts what can).
    strict: bool = False
    #: False: a machine that never captures (`labelsieve eval`): its data manager runs with capture disabled.
    capture: bool = True
    #: Where `${packages.<type>.<name>}` placeholders are found, in viam-server's layout.
    packages_dir: Path = DEFAULT_PACKAGES_DIR


class Runtime:
    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.address = ""
        self.routes = Routes()
        self.forwarder = Forwarder(self.routes)
        _sweep_stale_socket_dirs()
        self._socket_dir = Path(tempfile.mkdtemp(prefix=_SOCKET_PREFIX, dir="/tmp"))  # short: socket paths max ~103 chars
        (self._socket_dir / "runtime.pid").write_text(str(os.getpid()))
        self._lock = asyncio.Lock()  # one config change or restart at a time
        self.pool = ModulePool(self.routes, self.forwarder, self._socket_dir, options.data_dir, options.config_path.parent,
                               options.call_timeout, options.restart, self._lock, self._restarted, options.max_request_bytes)
        machine = MachineContext(options.config_path.parent, options.data_dir, options.capture)
        self.builtins = BuiltinHost(self.routes, self.forwarder, self._socket_dir, machine, options.max_request_bytes)
        self.resources = Resources(self.routes, self._owners, self.builtins.expand, self.pool.failed)
        self._client_server: Server | None = None

    @property
    def config(self) -> MachineConfig | None:
        return self.resources.config

    def _owners(self) -> list[Owner]:
        return [self.builtins, *self.pool.modules.values()]

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def validate(self) -> MachineConfig:
        """Everything `start` checks, with no resource added and no listener opened; every problem raised together."""
        self.pool.quiet = True
        try:
            config = load_config(self.options.config_path, unset_env="collect", packages_dir=self.options.packages_dir)
            await self._checked(config)
            return config
        finally:
            await self.shutdown()

    async def start(self) -> None:
        try:
            async with self._lock:  # a module crashing meanwhile is restarted after, not during, start-up
                config = load_config(self.options.config_path, packages_dir=self.options.packages_dir)
                await self._listen()  # first: a taken port should not cost minutes of weight loading
                if not self.options.strict:
                    await self.builtins.start()
                    await self._apply(replace(config, modules=(), resources=()), config, starting=True)
                    return
                self.resources.deps = await self._checked(config)
                self.resources.config = config
                _note_ignored(config)
                for resource in self.resources.order():
                    await self.resources.add(resource)
        except BaseException:
            await self.shutdown()
            raise

    async def _checked(self, config: MachineConfig) -> dict[str, Dependencies]:
        """All or nothing: every problem is raised together, and nothing is added."""
        await self.builtins.start()
        failures = await self.pool.start(config.modules)
        deps, errors = await self.resources.check(config, config.resources)
        if failures or errors or config.unset_env:
            raise InvalidMachineConfig([*config.unset_env, *failures, *errors.values()])
        dependency_order(config, present(deps, {r.name for r in config.resources}))
        return deps

    async def connect(self) -> RobotClient:
        """A viam-sdk client of this runtime over its own listener: in-process callers (the demo, `labelsieve eval`)
        reach resources exactly as any SDK client does."""
        key, tls = self.options.api_key, bool(self.options.api_key or self.options.tls_cert)
        options = DialOptions(insecure=not tls, disable_webrtc=True, auth_entity=self.options.api_key_id,
                              credentials=Credentials(type="api-key", payload=key) if key else None)
        return await RobotClient.at_address(self.address, RobotClient.Options(dial_options=options, disable_sessions=True))

    async def _listen(self) -> None:
        auth = ApiKeyAuth(self.options.api_key, self.options.api_key_id) if self.options.api_key else None
        server = make_server([RobotService(self.routes, self.forwarder), self.forwarder], auth, self.options.max_request_bytes)
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
        await self.builtins.close()
        await self.pool.shutdown()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def kill(self) -> None:
        """Forced shutdown: SIGKILL every module and remove the sockets, without waiting for anything."""
        self.pool.kill()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    async def _restarted(self, owner: Owner) -> None:
        for resource in self.resources.of_owner(owner.name):
            await self.resources.add(resource)

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
                    await self.reload()
                except LabelsieveError as exc:
                    log.error("config change not applied, still running the previous config:\n%s", exc)
                except Exception:  # a watcher that dies silently would ignore every later edit
                    log.exception("applying the config change failed; the machine may be partly updated")

    async def reload(self) -> None:
        """Apply the file's current content."""
        assert self.config is not None
        await self._apply(self.config, load_config(self.options.config_path, packages_dir=self.options.packages_dir))

    async def _apply(self, old: MachineConfig, new: MachineConfig, *, starting: bool = False) -> None:
        """Go from `old` to `new`: `reload.plan`, check, then the steps `reload.settle` decides. Start-up is the step
        from an empty machine."""
        running = reload.Running(frozenset(self.pool.alive()), self.resources.owner_names(old),
                                 frozenset(self.routes.failed_names()), dict(self.resources.deps))
        p = reload.plan(old, new, running, lambda r: o.name if (o := self.resources.owner(r)) else None)
        checked, errors = await self.resources.check(new, p.check_first)
        reload.settle(p, running, checked, errors)  # a cycle is refused here, before anything changes

        self.routes.forget_failures(keep={r.name for r in new.resources})
        old_res = {r.name: r for r in old.resources}
        for name in p.leaving:
            if p.owner_of.get(name) in p.stop_modules:
                self.routes.remove(old_res[name].api, name)
            else:
                await self.resources.remove(old_res[name])
        for name in p.stop_modules:
            for r in old.resources:
                if p.owner_of.get(r.name) == name:
                    self.routes.remove(r.api, r.name)
            await self.pool.stop(name)
            log.info("stopped module '%s'", name)
        start_failures = await self.pool.start(p.start_modules)
        for failure in start_failures:
            log.error("%s", failure)
        later, later_errors = await self.resources.check(new, p.check_later)
        settled = reload.settle(p, running, {**checked, **later}, {**errors, **later_errors})

        for name, error in settled.kept.items():
            log.error("config change for %s not applied, keeping its previous config: %s", name, error)
        for name, error in settled.failed.items():
            if starting:
                log.error("not started: %s", error)
            else:
                log.error("config change for %s not applied, it is not running: %s", name, error)
            if name in old_res and name not in p.leaving and p.owner_of.get(name) not in p.stop_modules:
                await self.resources.remove(old_res[name])  # running, but what it needs is gone
            self.routes.fail(new.resource(name).api, name, str(error))
        self.resources.config, self.resources.deps = settled.config, settled.deps
        _note_ignored(settled.config)
        for step, resource in settled.steps:
            await self.resources.add(resource, reconfigure=step == "reconfigure")
        started = len(p.start_modules) - len(start_failures)
        if starting:
            log.info("started: %d resource(s) added, %d module(s) running%s", len(settled.steps), started,
                     f"; not running: {len(start_failures)} module(s), {len(settled.failed)} resource(s)"
                     if start_failures or settled.failed else "")
            return
        log.info("applied config change: %d resource(s) added or reconfigured, %d removed, %d module(s) (re)started%s",
                 len(settled.steps), len({r.name for r in old.resources} - {r.name for r in new.resources}), started,
                 f", {len(start_failures)} failed to start" if start_failures else "")


def _sweep_stale_socket_dirs() -> None:
    """A runtime killed with SIGKILL could not remove its sockets; the next one does, once their owner is gone."""
    for pid_file in Path("/tmp").glob(f"{_SOCKET_PREFIX}*/runtime.pid"):
        try:
            os.kill(int(pid_file.read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(pid_file.parent, ignore_errors=True)
        except (OSError, ValueError):  # not ours to judge: another user's, or being written right now
            continue


def _note_ignored(config: MachineConfig) -> None:
    for warning in config.warnings:
        log.info("runs here, but not as written under viam-server: %s", warning)
    if config.ignored:
        log.warning("%s: ignoring %s (the embedded runtime takes listen address and keys from its command line)",
                    config.path.name, ", ".join(config.ignored))
    if not any(r.api == "rdk:service:data_manager" for r in config.resources):
        for r in config.resources:
            if r.service_configs:
                log.warning("resource '%s' has service_configs, but no data manager reads them: add a service "
                            "{\"api\": \"rdk:service:data_manager\", \"model\": \"rdk:builtin:builtin\"}", r.name)

