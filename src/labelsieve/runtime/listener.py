"""The client listener: the TCP socket SDK clients dial, with API-key auth, TLS and a request size limit.

The viam SDK sends an API key only over TLS (its plaintext path with credentials fails), so a keyed runtime serves TLS: the
user's certificate, or a self-signed one made for this run, which the SDK accepts for localhost addresses (it skips
verification there) and which remote clients must be given.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import ipaddress
import logging
import secrets
import ssl
import struct
from pathlib import Path
from typing import Any

import grpclib.server
from grpclib import GRPCError, Status
from grpclib.events import RecvRequest, listen
from grpclib.server import Server, Stream
from viam.gen.proto.rpc.v1.auth_grpc import UnimplementedAuthServiceBase
from viam.proto.rpc.auth import AuthenticateResponse

from labelsieve.viam.h2 import BoundedServer
from labelsieve.runtime.routing import Forwarder, PassThroughCodec

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "ApiKeyAuth", "limit_request_size", "make_server", "self_signed", "server_context"]

log = logging.getLogger("labelsieve.runtime")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
_max_request_bytes = DEFAULT_MAX_REQUEST_BYTES


def limit_request_size(limit: int) -> None:
    """Refuse any request message over `limit` bytes with RESOURCE_EXHAUSTED, from its 5-byte length prefix, before its
    body is buffered: grpclib has no such setting, and a 100 MB `extra` took the runtime to 475 MB."""
    global _max_request_bytes
    _max_request_bytes = limit


async def _recv_message(stream: Any, codec: Any, message_type: Any) -> Any:
    meta = await stream.recv_data(5)
    if not meta:
        return None
    if struct.unpack("?", meta[:1])[0]:
        raise NotImplementedError("Compression not implemented")
    size = struct.unpack(">I", meta[1:])[0]
    if size > _max_request_bytes:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, f"request of {size} bytes is over the runtime's limit of "
                                                   f"{_max_request_bytes} bytes (labelsieve run --max-request-bytes)")
    return codec.decode(await stream.recv_data(size), message_type)


grpclib.server.recv_message = _recv_message  # what every server-side Stream.recv_message calls


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


class _LiveMapping(dict):  # type: ignore[type-arg]
    """grpclib copies its handlers' mappings once, when the server is made; custom APIs' methods are learnt later, when
    their module reports Ready, so a lookup falls back to what the forwarder has learnt since."""

    def __init__(self, static: dict[str, Any], forwarder: Forwarder) -> None:
        super().__init__(static)
        self._forwarder = forwarder

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or self._forwarder.learned.get(key, default)


def make_server(handlers: list[Any], auth: ApiKeyAuth | None = None) -> Server:
    server = BoundedServer([*handlers, auth] if auth else handlers, codec=PassThroughCodec())
    if forwarder := next((h for h in handlers if isinstance(h, Forwarder)), None):
        server._mapping = _LiveMapping(server._mapping, forwarder)
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
