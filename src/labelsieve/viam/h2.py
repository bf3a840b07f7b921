"""grpclib connections that forget closed HTTP/2 streams sooner.

h2 remembers how each closed stream ended (`H2Connection._closed_streams`, up to `MAX_CLOSED_STREAMS` = 65,536 per
connection) so a frame still in flight after a reset is answered correctly. A long-lived local connection that carries a
call per capture therefore grows by about 125 bytes a call, linearly, for 65,536 calls (some 8 MB a connection): the
runtime's resident memory grew by about 470 bytes a capture at 100 Hz, one such entry on each of the three connections a
capture crosses in the runtime (data manager client, builtin parent server, module channel). A few thousand streams
cover any frame still in flight on a local socket, so these classes keep 1,024; they change nothing else, and only
connections made through them (never grpclib's or h2's globals).
"""

from __future__ import annotations

from asyncio import BaseTransport
from typing import Any

from grpclib.client import Channel
from grpclib.protocol import H2Protocol
from grpclib.server import Server

__all__ = ["CLOSED_STREAMS_KEPT", "BoundedChannel", "BoundedServer"]

CLOSED_STREAMS_KEPT = 1024


def _bounded(protocol: H2Protocol) -> H2Protocol:
    made = protocol.connection_made

    def connection_made(transport: BaseTransport) -> None:
        made(transport)
        closed: Any = protocol.connection._connection._closed_streams  # h2's SizeLimitDict
        closed._size_limit = CLOSED_STREAMS_KEPT

    protocol.connection_made = connection_made  # type: ignore[method-assign]  # this connection only
    return protocol


class BoundedChannel(Channel):
    def _protocol_factory(self) -> H2Protocol:
        return _bounded(super()._protocol_factory())


class BoundedServer(Server):
    def _protocol_factory(self) -> H2Protocol:
        return _bounded(super()._protocol_factory())
