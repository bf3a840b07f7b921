"""viam-server's data manager (`rdk:service:data_manager`, model `rdk:builtin:builtin`) as a builtin of the runtime.

viam-sdk has no Python class for this API, so it is registered here (interface, RPC service, client), which also lets
SDK clients call `sync` and `do_command` on it through the runtime. The capture and sync logic is
`labelsieve.capture.manager`; this file only feeds it what viam-server's data manager sees: every resource's
`service_configs` (injected into its config by `expand`, since a builtin, unlike a module, may read the machine config),
and a viam-sdk client for each captured resource.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Final, cast

from grpclib import GRPCError, Status
from fsspec.core import split_protocol
from grpclib.client import Channel
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import DoCommandRequest, DoCommandResponse, ResourceName
from viam.proto.service.datamanager import DataManagerServiceBase, DataManagerServiceStub, SyncRequest, SyncResponse
from viam.resource.base import ResourceBase
from viam.resource.registry import Registry, ResourceRegistration
from viam.resource.rpc_client_base import ReconfigurableResourceRPCClientBase
from viam.resource.rpc_service_base import ResourceRPCServiceBase
from viam.resource.types import API, Model, ModelFamily
from viam.services.service_base import ServiceBase
from viam.utils import dict_to_struct, struct_to_dict

from labelsieve.capture.manager import CaptureMethod, DataManagerConfig
from labelsieve.capture.manager import DataManager as Capture
from labelsieve.runtime.builtins import MachineContext, register
from labelsieve.runtime.config import MachineConfig, ResourceConfig
from labelsieve.viam.convert import attributes_of
from labelsieve.viam.errors import grpc_errors

__all__ = ["DataManagerClient", "DataManagerService"]

#: Where `expand` puts the capture methods it collected; never written to a file, and never seen by viam-server.
_CAPTURES = "__labelsieve_capture_methods"


class DataManagerService(ServiceBase):
    """The data manager's API as SDK clients see it (`DataManagerService.from_robot(robot, name)`); its capture and sync
    core is `labelsieve.capture.manager.DataManager`."""

    API: Final = API("rdk", "service", "data_manager")  # type: ignore[misc]

    @abc.abstractmethod
    async def sync(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        """Upload every closed capture file now."""


class DataManagerRPCService(DataManagerServiceBase, ResourceRPCServiceBase[DataManagerService]):
    RESOURCE_TYPE = DataManagerService  # type: ignore[assignment]  # viam-sdk declares it as `typing.Type` itself

    async def Sync(self, stream: Any) -> None:
        request = await stream.recv_message()
        await self.get_resource(request.name).sync(extra=struct_to_dict(request.extra))
        await stream.send_message(SyncResponse())

    async def DoCommand(self, stream: Any) -> None:
        request = await stream.recv_message()
        result = await self.get_resource(request.name).do_command(struct_to_dict(request.command))
        await stream.send_message(DoCommandResponse(result=dict_to_struct(result)))

    async def GetStatus(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "GetStatus is not implemented by the data manager")

    async def UploadBinaryDataToDatasets(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, "uploading to Viam cloud datasets needs viam-server; use sync_url instead")


class DataManagerClient(DataManagerService, ReconfigurableResourceRPCClientBase):
    def __init__(self, name: str, channel: Channel) -> None:
        self.channel, self.client = channel, DataManagerServiceStub(channel)
        super().__init__(name)

    @property
    def _stub(self) -> DataManagerServiceStub:
        return cast(DataManagerServiceStub, self.client)  # the base types it as any stub; reset_channel replaces it

    async def sync(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        await self._stub.Sync(SyncRequest(name=self.name, extra=dict_to_struct(dict(extra or {}))), timeout=timeout)

    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None, **kwargs: Any) -> Mapping[str, Any]:
        response = await self._stub.DoCommand(DoCommandRequest(name=self.name, command=dict_to_struct(dict(command))),
                                               timeout=timeout)
        return struct_to_dict(response.result)


Registry.register_api(ResourceRegistration(DataManagerService, DataManagerRPCService,  # type: ignore[type-abstract]
                                           DataManagerClient))  # viam-sdk registers its abstract APIs just so


def _methods(config: ComponentConfig) -> tuple[DataManagerConfig, list[CaptureMethod]]:
    attributes = dict(attributes_of(config))
    captures = attributes.pop(_CAPTURES, [])
    return DataManagerConfig.parse(config.name, attributes), [CaptureMethod(**c) for c in captures]


@register
class BuiltinDataManager(DataManagerService):
    MODEL: ClassVar = Model(ModelFamily("rdk", "builtin"), "builtin")
    capture: Capture
    _started: asyncio.Task[None]

    @classmethod
    def expand(cls, resource: ResourceConfig, config: MachineConfig, machine: MachineContext) -> ResourceConfig:
        """Its config plus the capture methods of every resource, which viam-server's data manager reads itself, with
        its folders made absolute (`capture_dir` by default the machine's data dir's `capture`, as $VIAM_HOME/capture)
        and capture disabled on a machine that must not capture."""
        methods = [dataclasses.asdict(method) for r in config.resources if r.service_configs
                   for method in CaptureMethod.from_service_configs(r.name, r.api, r.service_configs)]
        local_sync = isinstance(url := resource.attributes.get("sync_url"), str) and not split_protocol(url)[0]
        resource = machine.absolute(resource, "capture_dir", *(("sync_url",) if local_sync else ()))
        attributes = {**resource.attributes, _CAPTURES: methods,
                      "capture_dir": resource.attributes.get("capture_dir") or str(machine.data_dir / "capture")}
        if not machine.capture:
            attributes["capture_disabled"] = True
        return replace(resource, attributes=attributes)

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        _, methods = _methods(config)
        return sorted({m.resource for m in methods}), []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> BuiltinDataManager:
        settings, methods = _methods(config)
        service = cls(config.name)
        service.capture = Capture(config.name, settings, methods, {n.name: client for n, client in dependencies.items()})
        service._started = asyncio.get_running_loop().create_task(service.capture.start())  # new() itself is sync
        return service

    @grpc_errors
    async def sync(self, *, extra: Mapping[str, Any] | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        await self.capture.sync()

    @grpc_errors
    async def do_command(self, command: Mapping[str, Any], *, timeout: float | None = None, **kwargs: Any) -> Mapping[str, Any]:
        if "stats" in command:
            return self.capture.stats()
        if "sync" in command:
            await self.sync()
            return self.capture.stats()
        raise GRPCError(Status.UNIMPLEMENTED, f"{self.name}: unknown command {sorted(command)}; known: stats, sync")

    async def close(self) -> None:
        await self._started
        await self.capture.close()
