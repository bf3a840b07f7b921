"""Custom APIs: a module may serve a resource API viam-sdk does not know (`Registry.register_api` with its own protobuf
service). viam-server forwards those too; so does the runtime. It learns the service's methods from the module itself,
through gRPC server reflection (every viam-sdk module serves it), and builds the request classes from the descriptors, so
calls can be routed by the request's `name` like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from labelsieve.errors import ModuleError

__all__ = ["Method", "service_methods"]

_CARDINALITY = {(False, False): Cardinality.UNARY_UNARY, (False, True): Cardinality.UNARY_STREAM,
                (True, False): Cardinality.STREAM_UNARY, (True, True): Cardinality.STREAM_STREAM}

#: One pool for every learned service: two modules may share a dependency file, which a pool must hold only once.
_POOL = descriptor_pool.DescriptorPool()


@dataclass(frozen=True)
class Method:
    path: str  # "/acme.component.gizmo.v1.GizmoService/DoOne"
    cardinality: Cardinality
    request_type: type[Any]


async def service_methods(channel: Channel, service: str, module: str) -> list[Method]:
    """The methods of `service` as the module describes it, with request classes built from its descriptors."""
    files: dict[str, FileDescriptorProto] = {}
    async with ServerReflectionStub(channel).ServerReflectionInfo.open() as stream:
        async def ask(request: ServerReflectionRequest) -> list[FileDescriptorProto]:
            await stream.send_message(request)
            response = await stream.recv_message()
            if response is None or response.HasField("error_response"):
                raise ModuleError(f"module '{module}' does not describe {str(request).strip()} through gRPC reflection, so the "
                                  f"runtime cannot forward its API {service}")
            return [FileDescriptorProto.FromString(raw) for raw in response.file_descriptor_response.file_descriptor_proto]

        async def load(protos: list[FileDescriptorProto]) -> None:
            for proto in protos:
                if proto.name in files:
                    continue
                files[proto.name] = proto
                for dependency in proto.dependency:
                    if dependency not in files and not _known(dependency):
                        await load(await ask(ServerReflectionRequest(file_by_filename=dependency)))

        await load(await ask(ServerReflectionRequest(file_containing_symbol=service)))
        await stream.end()
    for name in _in_dependency_order(files):
        if not _known(name):
            _POOL.Add(files[name])
    methods = []
    for method in _POOL.FindServiceByName(service).methods:
        request = message_factory.GetMessageClass(method.input_type)
        methods.append(Method(f"/{service}/{method.name}",
                              _CARDINALITY[(method.client_streaming, method.server_streaming)], request))
    return methods


def _known(file_name: str) -> bool:
    """Already in our pool, or a file every process has (google/protobuf/*, viam's common protos): copied in from the
    default pool rather than asked for."""
    try:
        _POOL.FindFileByName(file_name)
        return True
    except KeyError:
        pass
    try:
        default = descriptor_pool.Default().FindFileByName(file_name)
    except KeyError:
        return False
    proto = FileDescriptorProto()
    default.CopyToProto(proto)
    for dependency in proto.dependency:
        _known(dependency)
    _POOL.Add(proto)
    return True


def _in_dependency_order(files: dict[str, FileDescriptorProto]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name in files and name not in order:
            for dependency in files[name].dependency:
                visit(dependency)
            order.append(name)

    for name in files:
        visit(name)
    return order
