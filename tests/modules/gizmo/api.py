"""A resource API nobody at viam wrote: `acme:component:gizmo`, with its own protobuf service, as a third-party module
defines one (`Registry.register_api`). The descriptors are built in code, where a real module would import protoc's output.
Both the module (main.py) and the test's client import this file, as both sides import a real API package."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Final

import grpclib.client
import grpclib.const
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from viam.components.component_base import ComponentBase
from viam.resource.registry import Registry, ResourceRegistration
from viam.resource.rpc_client_base import ReconfigurableResourceRPCClientBase
from viam.resource.rpc_service_base import ResourceRPCServiceBase
from viam.resource.types import API, RESOURCE_NAMESPACE_RDK  # noqa: F401

SERVICE = "acme.component.gizmo.v1.GizmoService"


def _messages() -> dict[str, type[Any]]:
    string, uint = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_UINT32
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    shapes = {"DoOneRequest": [("name", string), ("arg", string)], "DoOneResponse": [("ret", string)],
              "CountRequest": [("name", string), ("upto", uint)], "CountResponse": [("n", uint)]}
    file = descriptor_pb2.FileDescriptorProto(name="acme/component/gizmo/v1/gizmo.proto", package="acme.component.gizmo.v1",
                                              syntax="proto3")
    for message, fields in shapes.items():
        file.message_type.add(name=message, field=[descriptor_pb2.FieldDescriptorProto(name=n, number=i + 1, type=t, label=optional)
                                                   for i, (n, t) in enumerate(fields)])
    service = file.service.add(name="GizmoService")
    service.method.add(name="DoOne", input_type=".acme.component.gizmo.v1.DoOneRequest",
                       output_type=".acme.component.gizmo.v1.DoOneResponse")
    service.method.add(name="Count", input_type=".acme.component.gizmo.v1.CountRequest",
                       output_type=".acme.component.gizmo.v1.CountResponse", server_streaming=True)
    pool = descriptor_pool.Default()
    pool.Add(file)
    return {m: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"acme.component.gizmo.v1.{m}")) for m in shapes}


M = _messages()


class Gizmo(ComponentBase):
    API: Final = API("acme", "component", "gizmo")  # type: ignore[misc]

    @abc.abstractmethod
    async def do_one(self, arg: str) -> str: ...

    @abc.abstractmethod
    def count(self, upto: int) -> AsyncIterator[int]: ...


class GizmoRPCService(ResourceRPCServiceBase):
    RESOURCE_TYPE: ClassVar = Gizmo

    async def DoOne(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(M["DoOneResponse"](ret=await self.get_resource(request.name).do_one(request.arg)))

    async def Count(self, stream: Any) -> None:
        request = await stream.recv_message()
        async for n in self.get_resource(request.name).count(request.upto):
            await stream.send_message(M["CountResponse"](n=n))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {f"/{SERVICE}/DoOne": grpclib.const.Handler(self.DoOne, grpclib.const.Cardinality.UNARY_UNARY,
                                                          M["DoOneRequest"], M["DoOneResponse"]),
                f"/{SERVICE}/Count": grpclib.const.Handler(self.Count, grpclib.const.Cardinality.UNARY_STREAM,
                                                          M["CountRequest"], M["CountResponse"])}


class GizmoClient(Gizmo, ReconfigurableResourceRPCClientBase):
    def __init__(self, name: str, channel: grpclib.client.Channel) -> None:
        super().__init__(name)
        self.channel = channel

    async def do_one(self, arg: str) -> str:
        method = grpclib.client.UnaryUnaryMethod(self.channel, f"/{SERVICE}/DoOne", M["DoOneRequest"], M["DoOneResponse"])
        return (await method(M["DoOneRequest"](name=self.name, arg=arg))).ret

    async def count(self, upto: int) -> AsyncIterator[int]:  # type: ignore[override]
        method = grpclib.client.UnaryStreamMethod(self.channel, f"/{SERVICE}/Count", M["CountRequest"], M["CountResponse"])
        for reply in await method(M["CountRequest"](name=self.name, upto=upto)):
            yield reply.n


Registry.register_api(ResourceRegistration(Gizmo, GizmoRPCService, lambda name, channel: GizmoClient(name, channel)))
