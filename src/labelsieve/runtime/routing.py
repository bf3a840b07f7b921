"""Call routing: which owner (a module process, or the runtime's builtin host) serves each resource, and a forwarder that
passes every resource API call to it by the request's `name` field, as viam-server does.

Every listener (a parent socket per module, the TCP listener for clients, the builtin host's parent socket) serves the same
`Forwarder` over the same `Routes`, so a call reaches a resource the same way whoever makes it.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hyperframe.frame
import viam.module.module  # noqa: F401  (registers every built-in API in the SDK registry)
from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream
from viam.proto.common import ResourceName
from viam.proto.robot import ResourceStatus
from viam.resource.registry import Registry

__all__ = ["RESTART_GRACE_S", "Forwarder", "Link", "PassThroughCodec", "Raw", "Routes", "resource_name"]

log = logging.getLogger("labelsieve.runtime")

#: How long a call waits for a restarting module, or a resource being reconfigured, before answering UNAVAILABLE.
RESTART_GRACE_S = 10.0
#: How long a call that lost its module's connection waits for the module's watcher to see it exit before it tells the
#: caller UNAVAILABLE instead of waiting for a restart. The watcher sees an exit within milliseconds on an idle machine
#: (a pidfd), but a loaded one (a robot's 2 busy cores, a test suite) delayed it past 1 s, and that call failed.
_EXIT_NOTICE_S = 5.0


def _cheap_frame_repr() -> None:
    """h2 formats `repr(frame)` for a trace log on every frame it receives, even with logging off, and hyperframe hexlifies
    the whole payload to show its first 20 hex digits: for a frame-sized reply that was ~0.1 ms of each hop. Same text,
    computed from the 10 bytes it shows.

    Process-wide on purpose: h2 builds its frames inside hyperframe, with no hook to give one connection another repr,
    and the text is the same for every input (tests/runtime/test_isolation.py compares both), so nothing else in the
    process can tell."""

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
    """The parent's side of one owner: its channel, whether it is up (cleared while a module restarts), and why the runtime
    gave up on it, if it did (then calls fail at once instead of waiting for a restart that will not come)."""

    module: str
    channel: Any = None
    given_up: str = ""
    #: How often the owner went down: a call that lost its connection tells a crash (wait for the restart, call again)
    #: from a failure to pass on.
    downs: int = 0
    _up: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def up(self) -> bool:
        return self._up

    def set_up(self, up: bool) -> None:
        if self._up and not up:
            self.downs += 1
        self._up = up
        if up:
            self.given_up = ""
        self._wake()

    def give_up(self, reason: str) -> None:
        if self._up:
            self.downs += 1
        self._up, self.given_up = False, reason
        self._wake()

    async def went_down(self, since: int, timeout: float) -> bool:
        """Whether the owner has gone down since `downs` was `since`, waiting up to `timeout` for it to."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.downs == since:
            try:
                await asyncio.wait_for(self._changed.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                return False
        return True

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def check(self) -> None:
        if self.given_up:
            raise GRPCError(Status.FAILED_PRECONDITION, self.given_up)

    async def wait_up(self, timeout: float | None) -> None:
        limit = RESTART_GRACE_S if timeout is None else min(timeout, RESTART_GRACE_S)
        deadline = asyncio.get_running_loop().time() + limit
        while not self._up:
            self.check()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._changed.wait(), max(remaining, 0))
            except TimeoutError:
                raise GRPCError(Status.UNAVAILABLE, f"module '{self.module}' is not running (restarting)") from None


@dataclass(eq=False)
class _Route:
    link: Link
    #: Cleared while the resource is being reconfigured: calls wait instead of meeting a half-replaced resource.
    free: asyncio.Event = field(default_factory=asyncio.Event)


def resource_name(api: str, name: str) -> ResourceName:
    namespace, kind, subtype = api.split(":")
    return ResourceName(namespace=namespace, type=kind, subtype=subtype, name=name)


class Routes:
    """Which owner serves each added resource, keyed by (API, name), and why the ones that failed to add did."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], _Route] = {}
        self._failed: dict[tuple[str, str], str] = {}

    def add(self, api: str, name: str, link: Link) -> None:
        self._failed.pop((api, name), None)
        route = self._routes.setdefault((api, name), _Route(link))
        route.link = link
        route.free.set()

    def hold(self, api: str, name: str) -> None:
        """Calls to this resource wait (up to the restart grace) until `add` or `fail` settles it."""
        if route := self._routes.get((api, name)):
            route.free.clear()

    def fail(self, api: str, name: str, error: str) -> None:
        if route := self._routes.pop((api, name), None):
            route.free.set()
        self._failed[(api, name)] = error

    def remove(self, api: str, name: str) -> None:
        if route := self._routes.pop((api, name), None):
            route.free.set()
        self._failed.pop((api, name), None)

    def failed_names(self) -> set[str]:
        return {name for _, name in self._failed}

    def forget_failures(self, keep: set[str]) -> None:
        """Drop the failure records of resources no longer in the config."""
        self._failed = {key: error for key, error in self._failed.items() if key[1] in keep}

    def links(self) -> list[tuple[tuple[str, str], Link]]:
        return [(key, route.link) for key, route in self._routes.items()]

    def names(self) -> list[ResourceName]:
        return [resource_name(api, name) for api, name in self._routes]

    def statuses(self) -> list[ResourceStatus]:
        ready, unhealthy = ResourceStatus.State.STATE_READY, ResourceStatus.State.STATE_UNHEALTHY
        return [
            *(ResourceStatus(name=resource_name(api, name), state=ready if route.link.up else unhealthy,
                             error="" if route.link.up else route.link.given_up or f"module '{route.link.module}' is restarting")
              for (api, name), route in self._routes.items()),
            *(ResourceStatus(name=resource_name(api, name), state=unhealthy, error=error)
              for (api, name), error in self._failed.items()),
        ]

    async def lookup(self, api: str, name: str, timeout: float | None) -> Link:
        """The link to call, once the resource is free and its owner up; the gRPC status a client should see otherwise."""
        limit = RESTART_GRACE_S if timeout is None else min(timeout, RESTART_GRACE_S)
        route = self._route(api, name)
        if not route.free.is_set():
            try:
                await asyncio.wait_for(route.free.wait(), limit)
            except TimeoutError:
                raise GRPCError(Status.UNAVAILABLE, f"{api}/{name} is still being reconfigured") from None
            route = self._route(api, name)
        if not route.link.up:
            await route.link.wait_up(timeout)
        return route.link

    def _route(self, api: str, name: str) -> _Route:
        if (api, name) in self._failed:
            raise GRPCError(Status.FAILED_PRECONDITION, f"{api}/{name} failed to start: {self._failed[(api, name)]}")
        try:
            return self._routes[(api, name)]
        except KeyError:
            known = sorted(n for a, n in self._routes if a == api)
            raise GRPCError(Status.NOT_FOUND, f"no {api} named '{name}'; known: {', '.join(known) or 'none'}") from None


def _remaining(stream: Stream[Any, Any]) -> float | None:
    return stream.deadline.time_remaining() if stream.deadline else None


class Forwarder:
    """Serves every resource API the SDK knows by passing each call, unchanged, to the owner of the resource."""

    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._mapping: dict[str, Handler] = {}
        self._stops: dict[str, tuple[str, Handler]] = {}  # API -> its Stop method, for StopAll
        #: Methods of custom APIs, learnt from the modules that serve them (see `reflection.py`); servers look here too.
        self.learned: dict[str, Handler] = {}
        self._apis = {str(api) for api in Registry.REGISTERED_APIS()}
        for api, registration in Registry.REGISTERED_APIS().items():
            service = registration.rpc_service
            for path, h in service.__mapping__(object.__new__(service)).items():
                self._mapping[path] = self._handler(str(api), path, h)
                if path.endswith("/Stop"):
                    self._stops[str(api)] = (path, h)

    def _handler(self, api: str, path: str, h: Handler) -> Handler:
        return Handler(functools.partial(self._forward, api, path, h), h.cardinality, h.request_type, Raw)

    def __mapping__(self) -> Mapping[str, Handler]:
        return self._mapping

    def knows(self, api: str) -> bool:
        return api in self._apis

    def learn(self, api: str, methods: list[Any]) -> None:
        """Forward a custom API's methods (`reflection.Method`s) like the SDK's own."""
        self._apis.add(api)
        for m in methods:
            self.learned[m.path] = self._handler(api, m.path, Handler(None, m.cardinality, m.request_type, Raw))

    async def _forward(self, api: str, path: str, h: Handler, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        if request is None or not hasattr(request, "name"):
            raise GRPCError(Status.UNIMPLEMENTED, f"{path} has no resource name to route by")
        client_streams = h.cardinality in (Cardinality.STREAM_UNARY, Cardinality.STREAM_STREAM)
        stale_retried = False
        while True:
            link = await self._routes.lookup(api, request.name, _remaining(stream))
            downs, replied = link.downs, False
            try:
                async with link.channel.request(path, h.cardinality, h.request_type, Raw, timeout=_remaining(stream)) as out:
                    await out.send_message(request, end=not client_streams)
                    pump = asyncio.create_task(self._pump(stream, out)) if client_streams else None
                    try:
                        while (reply := await out.recv_message()) is not None:
                            await stream.send_message(reply)
                            replied = True
                            if h.cardinality in (Cardinality.UNARY_UNARY, Cardinality.STREAM_UNARY):
                                break
                    finally:
                        if pump:
                            pump.cancel()
                return
            except GRPCError as exc:
                raise GRPCError(exc.status, exc.message) from None  # details need a codec the parent doesn't share
            except (ConnectionError, OSError, StreamTerminatedError) as exc:
                # The module died under the call: made again once it is back, as a call made during the restart would
                # be, unless part of the answer has gone out, the request stream is spent or time is up. A connection
                # made to the module before it restarted fails the first request sent on it although the module is up
                # again: that is called again once, at once (seen under load: the restart beat the call's lookup).
                if replied or client_streams or isinstance(exc, TimeoutError):
                    raise GRPCError(Status.UNAVAILABLE, f"module '{link.module}' did not answer {path}: {exc!r}") from exc
                if link.downs == downs and link.up and link.downs and not stale_retried:
                    stale_retried = True
                    log.debug("module '%s': a connection from before its restart failed %s; calling again", link.module,
                              path)
                    continue
                if not await link.went_down(downs, _EXIT_NOTICE_S):
                    raise GRPCError(Status.UNAVAILABLE, f"module '{link.module}' did not answer {path}: {exc!r}") from exc
                log.debug("module '%s' went down during %s; calling again once it is back", link.module, path)

    async def stop_all(self, extra: Mapping[tuple[str, str], Any]) -> None:
        """Stop every resource whose API has Stop (motors, arms, bases...), all of them even if some fail, as
        viam-server does: a robot told to stop must not keep one actuator running because another errored."""
        calls = [(api, name, link) for (api, name), link in self._routes.links() if api in self._stops]

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
