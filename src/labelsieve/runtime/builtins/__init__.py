"""Builtin resources: what viam-server serves itself (the data manager, fake components), hosted in the runtime process.

A builtin model is a viam-sdk resource class, written exactly like a module's `EasyResource` (`MODEL`, `validate_config`,
`new(config, dependencies)`), registered with `register(cls)`. The `BuiltinHost` is an owner like any module process: the
resource layer validates, adds, reconfigures and removes its resources with the config, the routes list them, and calls
reach them through the same forwarder. Their dependencies are viam-sdk's own typed clients (`CameraClient`,
`VisionClient`...) on a parent socket of their own, so a builtin calls any resource the way an SDK client does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from grpclib.client import Channel
from grpclib.server import Server
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName
from viam.resource.base import ResourceBase
from viam.resource.manager import ResourceManager
from viam.resource.registry import Registry
from viam.resource.rpc_service_base import ResourceRPCServiceBase
from viam.resource.types import API

from labelsieve.attributes import resolve_path
from labelsieve.errors import ModuleError
from labelsieve.runtime.config import MachineConfig, ResourceConfig
from labelsieve.runtime.listener import DEFAULT_MAX_REQUEST_BYTES, make_server
from labelsieve.runtime.process import VALIDATE_TIMEOUT_S, Dependencies, component_config, socket_path
from labelsieve.runtime.robot import RobotService
from labelsieve.runtime.routing import Forwarder, Link, PassThroughCodec, Routes, resource_name
from labelsieve.viam.errors import grpc_seam
from labelsieve.viam.h2 import BoundedChannel, BoundedServer

__all__ = ["BUILTIN", "Builtin", "BuiltinHost", "MachineContext", "register", "registered"]

log = logging.getLogger("labelsieve.runtime")

#: The owner name of builtin resources in logs and statuses; reserved, so no module may take it.
BUILTIN = "builtin"


@dataclass(frozen=True)
class MachineContext:
    """What a builtin knows of the machine it runs in. Builtins share the runtime's process, so they get this from their
    host, not from the environment a module process gets: two runtimes in one process keep their own."""

    config_dir: Path
    data_dir: Path
    #: False for a machine that must never capture (`labelsieve eval`): the data manager runs with capture disabled.
    capture: bool = True

    def absolute(self, resource: ResourceConfig, *keys: str) -> ResourceConfig:
        """`resource` with its path attributes `keys` made absolute against the config's folder, as a module resolves
        them against LABELSIEVE_CONFIG_DIR."""
        paths = {k: str(resolve_path(v, self.config_dir)) for k in keys if isinstance(v := resource.attributes.get(k), str) and v}
        return replace(resource, attributes={**resource.attributes, **paths}) if paths else resource


class Builtin(Protocol):
    """A builtin model's class: a viam-sdk resource class, plus an optional `expand(resource, machine_config, machine)`
    hook for builtins that read the whole machine config (the data manager reads every resource's `service_configs`) or
    resolve paths (`MachineContext.absolute`)."""

    API: ClassVar[API]
    MODEL: ClassVar[Any]

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Any, Any]: ...

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> ResourceBase: ...


_REGISTRY: dict[tuple[str, str], type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Make `cls` a builtin model of the runtime (usable as a class decorator)."""
    _REGISTRY[(str(cls.API), str(cls.MODEL))] = cls
    return cls


def registered() -> dict[str, set[str]]:
    served: dict[str, set[str]] = {}
    for api, model in _REGISTRY:
        served.setdefault(api, set()).add(model)
    return served


class BuiltinHost:
    """The Owner of builtin resources: an in-process module with its own serving socket and parent socket."""

    name = BUILTIN

    def __init__(self, routes: Routes, forwarder: Forwarder, socket_dir: Path, machine: MachineContext,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.machine, self._max_request_bytes = machine, max_request_bytes
        self.link = Link(BUILTIN)
        self.served = registered()
        self._socket = socket_path(socket_dir, f"{BUILTIN}.sock")
        self._parent_socket = socket_path(socket_dir, f"{BUILTIN}.parent.sock")
        self._routes, self._forwarder = routes, forwarder
        self._manager = ResourceManager([])
        self._servers: list[Server] = []
        self._dependency_channel: Channel | None = None

    async def start(self) -> None:
        parent = make_server([RobotService(self._routes, self._forwarder, BUILTIN), self._forwarder],
                             max_request_bytes=self._max_request_bytes)
        server = BoundedServer([registration.rpc_service(manager=self._manager)
                         for registration in Registry.REGISTERED_APIS().values()
                         if issubclass(registration.rpc_service, ResourceRPCServiceBase)])
        await parent.start(path=str(self._parent_socket))
        await server.start(path=str(self._socket))
        self._servers = [server, parent]
        self.link.channel = BoundedChannel(path=str(self._socket), codec=PassThroughCodec())
        self._dependency_channel = BoundedChannel(path=str(self._parent_socket))
        self.link.set_up(True)

    def is_alive(self) -> bool:
        return self.link.up

    def expand(self, resource: ResourceConfig, config: MachineConfig) -> ResourceConfig:
        """The config a builtin sees: its own, or what its class's `expand` derives from the machine."""
        cls = _REGISTRY.get((resource.api, resource.model))
        expand = getattr(cls, "expand", None)
        return expand(resource, config, self.machine) if expand else resource

    def _class(self, resource: ResourceConfig) -> type[Any]:
        try:
            return _REGISTRY[(resource.api, resource.model)]
        except KeyError:
            raise ModuleError(f"no builtin {resource.model} for {resource.api}") from None

    async def validate(self, resource: ResourceConfig) -> Dependencies:
        """As a module's ValidateConfig, with viam-server's 5 s; errors leave through the modules' seam (a ConfigError is
        INVALID_ARGUMENT with its message, a bug INTERNAL with its traceback logged)."""
        cls = self._class(resource)

        async def check() -> tuple[Any, Any]:
            with grpc_seam(f"{cls.__name__}.validate_config", log, logging.DEBUG):  # the resource layer reports it
                return await asyncio.to_thread(cls.validate_config, component_config(resource))

        try:
            result = await asyncio.wait_for(check(), VALIDATE_TIMEOUT_S)
        except TimeoutError:
            raise ModuleError(f"builtin {resource.model} did not validate {resource.name} in {VALIDATE_TIMEOUT_S:.0f} s") from None
        required, optional = result
        return Dependencies(tuple(required), tuple(optional))

    async def add(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        assert self._dependency_channel is not None, "builtin host not started"
        cls = self._class(resource)
        clients = {}
        for full in dependencies:
            api, _, name = full.rpartition("/")
            clients[resource_name(api, name)] = Registry.lookup_api(API.from_string(api)).create_rpc_client(
                name, self._dependency_channel)
        try:
            instance = cls.new(component_config(resource), clients)
        except Exception as exc:
            raise ModuleError(f"builtin {resource.model} could not create {resource.name}: {exc}") from exc
        self._manager.register(instance)

    async def reconfigure(self, resource: ResourceConfig, dependencies: list[str]) -> None:
        """As viam-sdk does for a module's resource: close the old object, create a new one."""
        await self.remove(resource)
        await self.add(resource, dependencies)

    async def remove(self, resource: ResourceConfig) -> None:
        name = resource_name(resource.api, resource.name)
        if name in self._manager.resources:
            await self._manager.remove_resource(name)

    def instances(self) -> list[ResourceBase]:
        """The builtin resources running now (`labelsieve run` reads its status from the data managers among them)."""
        return list(self._manager.resources.values())

    async def close(self) -> None:
        """Idempotent, and safe before `start`."""
        if not self.link.up:
            return
        self.link.set_up(False)
        close_all: Callable[[], Awaitable[None]] = self._manager.close  # unannotated in viam-sdk
        await close_all()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for channel in (self.link.channel, self._dependency_channel):
            if channel is not None:
                channel.close()


from labelsieve.runtime.builtins import data_manager, fakes  # noqa: E402, F401  (registers the builtins; they import this module)
