"""The parent's gRPC surface: the robot API every module and SDK client talks to, and a forwarder for every resource API.

One `Routes` table says which module serves which resource; each listener (a parent socket per module, the TCP listener
for clients) serves the same forwarder over it. Calls are routed by the request's `name` field, as viam-server does.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hyperframe.frame
import viam.module.module  # noqa: F401  (registers every built-in API in the SDK registry)
from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Server, Stream
from viam.gen.proto.rpc.v1.auth_grpc import UnimplementedAuthServiceBase
from viam.gen.robot.v1.robot_grpc import UnimplementedRobotServiceBase
from viam.proto.common import ResourceName
from viam.proto.robot import (
    GetMachineStatusResponse,
    GetVersionResponse,
    LogResponse,
    ResourceNamesResponse,
    ResourceStatus,
    StopAllResponse,
)
from viam.proto.rpc.auth import AuthenticateResponse
from viam.resource.registry import Registry

from labelsieve import __version__

__all__ = ["ApiKeyAuth", "Forwarder", "Link", "PassThroughCodec", "RobotService", "Routes", "make_server"]

log = logging.getLogger("labelsieve.runtime")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL, "dpanic": logging.CRITICAL}

#: How long a call waits for a restarting module before answering UNAVAILABLE.
RESTART_GRACE_S = 10.0


def _cheap_frame_repr() -> None:
    """h2 formats `repr(frame)` for a trace log on every frame it receives, even with logging off, and hyperframe hexlifies
    the whole payload to show its first 20 hex digits: for a frame-sized reply that was ~0.1 ms of each hop. Same text,
    computed from the 10 bytes it shows."""

    def raw_data_repr(data: bytes | None) -> str:
        if not data:
            return "None"
        return "<hex:" + binascii.hexlify(data[:10]).decode("ascii") + ("..." if len(data) > 10 else "") + ">"

    hyperframe.frame._raw_data_repr = raw_data_repr


_cheap_frame_repr()


class Raw:
    """Marker reply type: the module's reply bytes go to the caller as they came, never decoded and re-encoded."""


class PassThroughCodec(ProtoCodec):
    """Protobuf, except for `Raw` replies. Decoding and re-encoding a frame-sized reply was most of a hop's cost."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        return message if message_type is Raw else super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data if message_type is Raw else super().decode(data, message_type)


@dataclass(eq=False)
class Link:
    """The parent's side of one module process: its channel, and whether it is up (cleared while restarting)."""

    module: str
    channel: Any = None
    up: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_up(self, timeout: float | None) -> None:
        limit = RESTART_GRACE_S if timeout is None else min(timeout, RESTART_GRACE_S)
        try:
            await asyncio.wait_for(self.up.wait(), limit)
        except TimeoutError:
            raise GRPCError(Status.UNAVAILABLE, f"module '{self.module}' is not running (restarting or failed)") from None


class Routes:
    """Which module serves each added resource, keyed by (API, name), and why the ones that failed to add did."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Link] = {}
        self._failed: dict[tuple[str, str], str] = {}

    def add(self, api: str, name: str, link: Link) -> None:
        self._failed.pop((api, name), None)
        self._routes[(api, name)] = link

    def fail(self, api: str, name: str, error: str) -> None:
        self._routes.pop((api, name), None)
        self._failed[(api, name)] = error

    def remove(self, api: str, name: str) -> None:
        self._routes.pop((api, name), None)
        self._failed.pop((api, name), None)

    def failed_names(self) -> set[str]:
        return {name for _, name in self._failed}

    def forget_failures(self, keep: set[str]) -> None:
        """Drop the failure records of resources no longer in the config."""
        self._failed = {key: error for key, error in self._failed.items() if key[1] in keep}

    def items(self) -> list[tuple[tuple[str, str], Link]]:
        return list(self._routes.items())

    def names(self) -> list[ResourceName]:
        return [_resource_name(api, name) for api, name in self._routes]

    def statuses(self) -> list[ResourceStatus]:
        ready, unhealthy = ResourceStatus.State.STATE_READY, ResourceStatus.State.STATE_UNHEALTHY
        return [
            *(ResourceStatus(name=_resource_name(api, name), state=ready if link.up.is_set() else unhealthy,
                             error="" if link.up.is_set() else f"module '{link.module}' is not running")
              for (api, name), link in self._routes.items()),
            *(ResourceStatus(name=_resource_name(api, name), state=unhealthy, error=error)
              for (api, name), error in self._failed.items()),
        ]

    def lookup(self, api: str, name: str) -> Link:
        if (api, name) in self._failed:
            raise GRPCError(Status.FAILED_PRECONDITION, f"{api}/{name} failed to start: {self._failed[(api, name)]}")
        try:
            return self._routes[(api, name)]
        except KeyError:
            known = sorted(n for a, n in self._routes if a == api)
            raise GRPCError(Status.NOT_FOUND, f"no {api} named '{name}'; known: {', '.join(known) or 'none'}") from None


def _resource_name(api: str, name: str) -> ResourceName:
    namespace, kind, subtype = api.split(":")
    return ResourceName(namespace=namespace, type=kind, subtype=subtype, name=name)


class RobotService(UnimplementedRobotServiceBase):
    """The robot API: resource names for clients and modules, and the Log sink for one module (`module` set) or clients."""

    def __init__(self, routes: Routes, forwarder: Forwarder, module: str | None = None) -> None:
        self._routes, self._forwarder = routes, forwarder
        self._log = logging.getLogger(f"labelsieve.module.{module}" if module else "labelsieve.client")

    async def ResourceNames(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(ResourceNamesResponse(resources=self._routes.names()))

    async def Log(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        for entry in request.logs:
            level = _LEVELS.get(entry.level.lower(), logging.INFO)
            # The Python SDK always fills `stack` with "exc_info: None, ..."; only a real traceback is worth printing.
            stack = f"\n{entry.stack}" if entry.stack and "exc_text: None" not in entry.stack else ""
            self._log.log(level, "%s: %s%s", entry.logger_name, entry.message, stack)
        await stream.send_message(LogResponse())

    async def GetMachineStatus(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(GetMachineStatusResponse(resources=self._routes.statuses(),
                                                           state=GetMachineStatusResponse.State.STATE_RUNNING))

    async def StopAll(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        extra = {(f"{p.name.namespace}:{p.name.type}:{p.name.subtype}", p.name.name): p.params for p in request.extra}
        await self._forwarder.stop_all(extra)
        await stream.send_message(StopAllResponse())

    async def GetVersion(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(GetVersionResponse(platform="labelsieve", version=__version__, api_version="0.85"))


class Forwarder:
    """Serves every resource API the SDK knows by passing each call, unchanged, to the module that owns the resource."""

    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._mapping: dict[str, Handler] = {}
        self._stops: dict[str, tuple[str, Handler]] = {}  # API -> its Stop method, for StopAll
        for api, registration in Registry.REGISTERED_APIS().items():
            service = registration.rpc_service
            for path, h in service.__mapping__(object.__new__(service)).items():
                forward = functools.partial(self._forward, str(api), path, h)
                self._mapping[path] = Handler(forward, h.cardinality, h.request_type, Raw)
                if path.endswith("/Stop"):
                    self._stops[str(api)] = (path, h)

    def __mapping__(self) -> Mapping[str, Handler]:
        return self._mapping

    async def _forward(self, api: str, path: str, h: Handler, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        if not hasattr(request, "name"):
            raise GRPCError(Status.UNIMPLEMENTED, f"{path} has no resource name to route by")
        link = self._routes.lookup(api, request.name)
        timeout = stream.deadline.time_remaining() if stream.deadline else None
        if not link.up.is_set():
            await link.wait_up(timeout)
            timeout = stream.deadline.time_remaining() if stream.deadline else None
        client_streams = h.cardinality in (Cardinality.STREAM_UNARY, Cardinality.STREAM_STREAM)
        try:
            async with link.channel.request(path, h.cardinality, h.request_type, Raw, timeout=timeout) as out:
                await out.send_message(request, end=not client_streams)
                pump = asyncio.create_task(self._pump(stream, out)) if client_streams else None
                try:
                    while (reply := await out.recv_message()) is not None:
                        await stream.send_message(reply)
                        if h.cardinality in (Cardinality.UNARY_UNARY, Cardinality.STREAM_UNARY):
                            break
                finally:
                    if pump:
                        pump.cancel()
        except GRPCError as exc:
            raise GRPCError(exc.status, exc.message) from None  # details need a codec the parent doesn't share
        except (ConnectionError, OSError, StreamTerminatedError) as exc:
            raise GRPCError(Status.UNAVAILABLE, f"module '{link.module}' did not answer {path}: {exc!r}") from exc

    async def stop_all(self, extra: Mapping[tuple[str, str], Any]) -> None:
        """Stop every resource whose API has Stop (motors, arms, bases...), all of them even if some fail, as
        viam-server does: a robot told to stop must not keep one actuator running because another errored."""
        calls = [(api, name, link) for (api, name), link in self._routes.items() if api in self._stops]

        async def stop(api: str, name: str, link: Link) -> None:
            path, h = self._stops[api]
            request = h.request_type(name=name)
            if (api, name) in extra:
                request.extra.CopyFrom(extra[(api, name)])
            async with link.channel.request(path, h.cardinality, h.request_type, Raw, timeout=RESTART_GRACE_S) as out:
                await out.send_message(request, end=True)
                await out.recv_message()

        results = await asyncio.gather(*(stop(*call) for call in calls), return_exceptions=True)
        failed = [f"{api}/{name}: {r}" for (api, name, _), r in zip(calls, results) if isinstance(r, BaseException)]
        if failed:
            summary = f"{len(failed)} of {len(calls)} resources did not stop: {'; '.join(failed)}"
            log.error("StopAll: %s", summary)
            raise GRPCError(Status.INTERNAL, summary)
        log.info("StopAll: stopped %d resource(s)", len(calls))

    @staticmethod
    async def _pump(incoming: Stream[Any, Any], outgoing: Any) -> None:
        async for message in incoming:
            await outgoing.send_message(message)
        await outgoing.end()


class ApiKeyAuth(UnimplementedAuthServiceBase):
    """rpc.v1 AuthService as the SDK dials it: an api-key credential buys a bearer token for this runtime's lifetime."""

    def __init__(self, key: str, key_id: str | None) -> None:
        self._key, self._key_id = key, key_id
        self._tokens: set[str] = set()

    async def Authenticate(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        entity_ok = self._key_id is None or hmac.compare_digest(request.entity.encode(), self._key_id.encode())
        key_ok = hmac.compare_digest(request.credentials.payload.encode(), self._key.encode())  # bytes: any key text
        if request.credentials.type != "api-key" or not key_ok or not entity_ok:
            log.warning("rejected a client with a wrong API key")
            raise GRPCError(Status.UNAUTHENTICATED, "wrong API key or key id")
        token = secrets.token_urlsafe(32)
        self._tokens.add(token)
        await stream.send_message(AuthenticateResponse(access_token=token))

    async def check(self, event: RecvRequest) -> None:
        if event.method_name.startswith("/proto.rpc.v1.AuthService/"):
            return
        bearer = str(event.metadata.get("authorization", ""))
        if not (bearer.startswith("Bearer ") and bearer[7:] in self._tokens):
            raise GRPCError(Status.UNAUTHENTICATED, "this runtime requires an API key: dial with api-key credentials")


def make_server(handlers: list[Any], auth: ApiKeyAuth | None = None) -> Server:
    server = Server([*handlers, auth] if auth else handlers, codec=PassThroughCodec())
    if auth:
        listen(server, RecvRequest, auth.check)
    return server

