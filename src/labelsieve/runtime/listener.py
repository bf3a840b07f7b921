"""The client listener: the TCP socket SDK clients dial, with API-key auth, TLS and a request size limit.

The viam SDK sends an API key only over TLS (its plaintext path with credentials fails), so a keyed runtime serves TLS: the
user's certificate, or a self-signed one made for this run, which the SDK accepts for localhost addresses (it skips
verification there) and which remote clients must be given.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hmac
import ipaddress
import logging
import secrets
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.events import RecvRequest, listen
from grpclib.server import Server, Stream
from viam.gen.proto.rpc.v1.auth_grpc import UnimplementedAuthServiceBase
from viam.proto.rpc.auth import AuthenticateResponse

from labelsieve.runtime.routing import Forwarder, PassThroughCodec, Raw
from labelsieve.viam.h2 import BoundedServer

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "ApiKeyAuth", "make_server", "self_signed", "server_context"]

log = logging.getLogger("labelsieve.runtime")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


class _LimitedStream(Stream[Any, Any]):
    """A server stream that refuses a request message over `max_bytes` with RESOURCE_EXHAUSTED, from its 5-byte length
    prefix, before its body is buffered: grpclib has no such setting, and a 100 MB `extra` took the runtime to 475 MB.
    The rest is grpclib's own `Stream.recv_message`. Only the streams of servers made by `make_server` are of this class,
    each with its own server's limit (two runtimes in one process keep theirs)."""

    max_bytes: int

    async def recv_message(self) -> Any:
        meta = await self._stream.recv_data(5)
        if not meta:
            return None
        if struct.unpack("?", meta[:1])[0]:
            raise GRPCError(Status.UNIMPLEMENTED, "compressed requests are not supported")
        size = struct.unpack(">I", meta[1:])[0]
        if size > self.max_bytes:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, f"request of {size} bytes is over the runtime's limit of "
                                                       f"{self.max_bytes} bytes (labelsieve run --max-request-bytes)")
        message = self._codec.decode(await self._stream.recv_data(size), self._recv_type)
        message, = await self._dispatch.recv_message(message)
        self._messages_received += 1
        self._stream.connection.messages_received += 1
        self._stream.connection.last_message_received = time.monotonic()
        return message


def _limited(func: Callable[[Stream[Any, Any]], Awaitable[None]], max_bytes: int, stream: Stream[Any, Any]) -> Awaitable[None]:
    stream.__class__ = _LimitedStream  # the stream grpclib made for this call, nothing else
    cast(_LimitedStream, stream).max_bytes = max_bytes
    return func(stream)


def _unknown(path: str) -> Handler:
    """What viam-server answers for a method no API has. grpclib's own answer ('Method not found') carries no
    content-type, which grpclib clients, viam-sdk's included, read as UNKNOWN 'Missing content-type header'; old clients
    and modules branch on UNIMPLEMENTED (e.g. to fall back from the removed `CameraService/GetImage`)."""
    service, _, method = path.lstrip("/").rpartition("/")

    async def refuse(stream: Stream[Any, Any]) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, f"unknown method {method} for service {service}")

    return Handler(refuse, Cardinality.UNARY_UNARY, Raw, Raw)


class ApiKeyAuth(UnimplementedAuthServiceBase):
    """rpc.v1 AuthService as the SDK dials it: an api-key credential buys a bearer token for this runtime's lifetime.
    Wrong keys from one peer are answered ever more slowly (50 ms more each time, up to 2 s: 1,000 guesses take half an
    hour instead of 0.7 s) and logged once per streak."""

    def __init__(self, key: str, key_id: str | None) -> None:
        self._key, self._key_id = key, key_id
        self._tokens: set[str] = set()
        self._failures: dict[str, int] = {}

    async def Authenticate(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None  # a unary method: grpclib has the message, or answers the client itself
        peer = _peer_host(stream)
        entity_ok = self._key_id is None or hmac.compare_digest(request.entity.encode(), self._key_id.encode())
        key_ok = hmac.compare_digest(request.credentials.payload.encode(), self._key.encode())  # bytes: any key text
        if request.credentials.type != "api-key" or not key_ok or not entity_ok:
            failures = self._failures[peer] = self._failures.get(peer, 0) + 1
            if failures == 1 or failures % 100 == 0:
                log.warning("rejected a wrong API key from %s (%d in a row; each answer is slower)", peer, failures)
            await asyncio.sleep(min(2.0, 0.05 * failures))
            raise GRPCError(Status.UNAUTHENTICATED, "wrong API key or key id")
        self._failures.pop(peer, None)
        token = secrets.token_urlsafe(32)
        self._tokens.add(token)
        await stream.send_message(AuthenticateResponse(access_token=token))

    async def check(self, event: RecvRequest) -> None:
        if event.method_name.startswith("/proto.rpc.v1.AuthService/"):
            return
        bearer = str(event.metadata.get("authorization", ""))
        if not (bearer.startswith("Bearer ") and bearer[7:] in self._tokens):
            raise GRPCError(Status.UNAUTHENTICATED, "this runtime requires an API key: dial with api-key credentials")


def _peer_host(stream: Stream[Any, Any]) -> str:
    address = stream.peer.addr()
    return str(address[0]) if address else "a local socket"


class _Handlers(dict[str, Handler]):
    """The method table grpclib looks calls up in (it only calls `get`). grpclib copies its handlers' tables once, when
    the server is made; custom APIs' methods are learnt later, when their module reports Ready, so a lookup falls back to
    what the forwarder has learnt since, then to UNIMPLEMENTED. Every handler gets the size-limited stream."""

    def __init__(self, static: Mapping[str, Handler], forwarder: Forwarder | None, max_bytes: int) -> None:
        super().__init__({path: self._wrap(h, max_bytes) for path, h in static.items()})
        self._forwarder, self._max_bytes = forwarder, max_bytes

    @staticmethod
    def _wrap(h: Handler, max_bytes: int) -> Handler:
        return Handler(functools.partial(_limited, h.func, max_bytes), h.cardinality, h.request_type, h.reply_type)

    def get(self, key: str, default: Any = None) -> Any:
        if (found := super().get(key)) is not None:
            return found
        learned = self._forwarder.learned.get(key) if self._forwarder else None
        return self._wrap(learned or _unknown(key), self._max_bytes)


def make_server(handlers: list[Any], auth: ApiKeyAuth | None = None,
                max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> Server:
    server = BoundedServer([*handlers, auth] if auth else handlers, codec=PassThroughCodec())
    forwarder = next((h for h in handlers if isinstance(h, Forwarder)), None)
    server._mapping = _Handlers(server._mapping, forwarder, max_request_bytes)
    if auth:
        listen(server, RecvRequest, auth.check)
    return server


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labelsieve")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30)).add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "runtime.crt", folder / "runtime.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context
