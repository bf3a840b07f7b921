"""The one place that talks to Viam's app: `viam://` URLs, credentials, the connection, paging, uploads and error mapping.

URLs (every query key optional; lists are comma-separated; times ISO 8601, `Z` allowed):

    viam://dataset/<id or name>?org=<org id>             a Viam dataset (a name is looked up in `org`)
    viam://data?org=&location=&machine=&machine_name=&part=&part_name=&component=&component_type=&method=
               &tags=a,b&labels=a,b&start=&end=&mime=image/jpeg,image/png      binary data by filter (an AND of fields)
    viam://?part=<part id>                               sync_url: the part the uploads belong to

`org` defaults to `VIAM_PRIMARY_ORG_ID` and `part` to `VIAM_MACHINE_PART_ID` (viam-server gives modules both); `mime`
defaults to JPEG and PNG. Credentials come only from `VIAM_API_KEY` / `VIAM_API_KEY_ID` and are never logged. The app is
app.viam.com unless `LABELSIEVE_VIAM_APP` names another `host:port` (plaintext only on a loopback address: a local stand-in).

Every failure leaves here as a LabelsieveError: a refused key is a ConfigError, INVALID_ARGUMENT an InputError, an
unreachable or failing app a BackendError.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from viam.app.data_client import DataClient
from viam.app.viam_client import ViamClient
from viam.proto.app.data import BinaryData, Filter
from viam.proto.app.datasync import (
    DataCaptureUploadMetadata,
    DataCaptureUploadRequest,
    DataSyncServiceStub,
    SensorData,
    StreamingDataCaptureUploadRequest,
    UploadMetadata,
)
from viam.rpc.dial import DialOptions
from viam.utils import create_filter

from labelsieve.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError, InputError, LabelsieveError

__all__ = ["APP_ENV", "MAX_UNARY_BYTES", "Cloud", "ViamUrl", "app_address", "connect", "is_viam_url", "parse_url"]

APP_ENV = "LABELSIEVE_VIAM_APP"
PAGE = 100  # rdk's CLI pages with at most 100: "too high can time out"
MAX_UNARY_BYTES = 1 << 20  # viam-server's MaxUnaryFileSize: larger payloads are streamed
CHUNK = 64 << 10  # viam-server's upload chunk
CALL_TIMEOUT_S = 120.0
_DATASET_ID = re.compile(r"[0-9a-f]{24}")  # Viam's dataset ids are Mongo ObjectIDs; anything else is a name
_FILTER_KEYS = {"org", "location", "machine", "machine_name", "part", "part_name", "component", "component_type",
                "method", "tags", "labels", "start", "end", "mime"}
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
T = TypeVar("T")


def is_viam_url(source: str) -> bool:
    return source.startswith("viam://")


@dataclass(frozen=True)
class ViamUrl:
    url: str
    kind: str  # "dataset", "data" or "" (sync_url)
    dataset: str = ""  # the id or name after viam://dataset/
    params: dict[str, str] = field(default_factory=dict)

    @property
    def org(self) -> str:
        return self.params.get("org") or os.environ.get("VIAM_PRIMARY_ORG_ID", "")

    @property
    def part(self) -> str:
        return self.params.get("part") or os.environ.get("VIAM_MACHINE_PART_ID", "")

    def filter(self, dataset_id: str = "") -> Filter:
        """The `Filter` the query names (an AND of its fields), restricted to `dataset_id` when given."""
        p = self.params

        def listed(key: str) -> list[str] | None:
            return [v for v in p[key].split(",") if v] if p.get(key) else None

        return create_filter(
            component_name=p.get("component"), component_type=p.get("component_type"), method=p.get("method"),
            robot_name=p.get("machine_name"), robot_id=p.get("machine"), part_name=p.get("part_name"),
            part_id=p.get("part"), location_ids=listed("location"),
            organization_ids=[self.org] if self.org and self.kind == "data" else None,
            mime_type=listed("mime") or ["image/jpeg", "image/png"], start_time=self._time("start"),
            end_time=self._time("end"), tags=listed("tags"), bbox_labels=listed("labels"), dataset_id=dataset_id or None)

    def _time(self, key: str) -> datetime | None:
        if not self.params.get(key):
            return None
        try:
            return datetime.fromisoformat(self.params[key])
        except ValueError:
            raise InputError(f"{self.url}: {key}={self.params[key]!r} is not an ISO 8601 time "
                             "(e.g. 2026-01-31T12:00:00Z)") from None


def parse_url(url: str, kinds: Sequence[str] = ("dataset", "data")) -> ViamUrl:
    """Parse and check a `viam://` URL; `kinds` are the forms the caller accepts."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    kind, name = parts.netloc, parts.path.strip("/")
    forms = {"dataset": "viam://dataset/<id or name>", "data": "viam://data?<filter>", "": "viam://?part=<part id>"}
    if parts.scheme != "viam" or kind not in forms or kind not in kinds or bool(name) != (kind == "dataset"):
        raise InputError(f"{url}: not a Viam URL this command takes; use " + " or ".join(forms[k] for k in kinds))
    if unknown := sorted(params.keys() - _FILTER_KEYS):
        raise InputError(f"{url}: unknown query key(s) {', '.join(unknown)}; known: {', '.join(sorted(_FILTER_KEYS))}")
    return ViamUrl(url, kind, name, params)


def app_address() -> str:
    return os.environ.get(APP_ENV) or "app.viam.com"


def _map_error(exc: BaseException, app: str) -> LabelsieveError:
    """The seam where grpclib's and the socket's errors become labelsieve's (the API key never enters a message)."""
    if isinstance(exc, LabelsieveError):
        return exc
    if isinstance(exc, GRPCError):
        detail = f"{exc.status.name}: {exc.message or ''}".rstrip(": ")
        if exc.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED):
            return ConfigError("", "VIAM_API_KEY", f"{app} refused the API key ({detail})",
                               "check VIAM_API_KEY and VIAM_API_KEY_ID, and the key's organization and role")
        if exc.status is Status.INVALID_ARGUMENT:
            return InputError(f"{app} rejected it as invalid: {detail}")
        if exc.status is Status.DEADLINE_EXCEEDED:
            return BackendTimeout(f"{app}: {detail}")
        if exc.status is Status.UNAVAILABLE:
            return BackendUnavailable(f"{app} is unavailable: {detail}")
        return BackendError(f"{app}: {detail}")
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"{app}: no answer within {CALL_TIMEOUT_S:g} s")
    return BackendUnavailable(f"cannot reach {app}: {type(exc).__name__}: {exc}")


_TRANSPORT_ERRORS = (GRPCError, OSError, TimeoutError, StreamTerminatedError, ProtocolError)


class Cloud:
    """An authenticated connection to the app: the SDK's DataClient for reads and labels, the data-sync stub for uploads
    that carry annotations (the SDK's upload helpers cannot)."""

    def __init__(self, app: str, client: ViamClient) -> None:
        self.app, self.client = app, client
        self.data: DataClient = client.data_client
        # DataClient keeps its channel and auth metadata private; the sync stub needs both (viam-cloud.md, section 5).
        self._channel, self._auth = self.data._channel, dict(self.data._metadata)

    async def call(self, work: Awaitable[T]) -> T:
        """Await one RPC under a timeout; its failure as a LabelsieveError."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await work
        except _TRANSPORT_ERRORS as exc:
            raise _map_error(exc, self.app) from exc

    async def metadata(self, query: Filter) -> AsyncIterator[BinaryData]:
        """Every match's metadata (no bytes), page by page as the service expects: `last` passed back until a page is
        empty."""
        last = ""
        while True:
            page, _, last = await self.call(self.data.binary_data_by_filter(
                query, limit=PAGE, last=last or None, include_binary_data=False))
            for item in page:
                yield item
            if not page or not last:
                return

    async def dataset_id(self, ref: str, org: str, create: bool = False) -> str:
        """A dataset's id from its id or its name in `org`; `create` makes a missing one."""
        if _DATASET_ID.fullmatch(ref):
            found = await self.call(self.data.list_dataset_by_ids([ref]))
            if found:
                return ref
        if not org:
            raise InputError(f"dataset {ref!r}: a name needs an organization: add ?org=<org id> or set VIAM_PRIMARY_ORG_ID")
        for dataset in await self.call(self.data.list_datasets_by_organization_id(org)):
            if dataset.name == ref:
                return str(dataset.id)
        if not create:
            raise InputError(f"no dataset {ref!r} in organization {org}")
        return await self.call(self.data.create_dataset(ref, org))

    async def upload(self, metadata: UploadMetadata, readings: Sequence[SensorData]) -> str:
        """Upload as viam-server's sync does: one DataCaptureUpload, or a stream of 64 KiB chunks for a binary payload
        above 1 MB. Returns the new binary data id (empty for tabular data)."""
        stub = DataSyncServiceStub(self._channel)
        if len(readings) == 1 and len(readings[0].binary) > MAX_UNARY_BYTES:
            payload = readings[0].binary
            first = StreamingDataCaptureUploadRequest(metadata=DataCaptureUploadMetadata(
                upload_metadata=metadata, sensor_metadata=readings[0].metadata))

            async def stream() -> str:
                async with stub.StreamingDataCaptureUpload.open(metadata=self._auth) as call:
                    await call.send_message(first)
                    for start in range(0, len(payload), CHUNK):
                        await call.send_message(StreamingDataCaptureUploadRequest(data=payload[start:start + CHUNK]),
                                                end=start + CHUNK >= len(payload))
                    response = await call.recv_message()
                return str(response.binary_data_id) if response else ""

            return await self.call(stream())
        reply = await self.call(stub.DataCaptureUpload(
            DataCaptureUploadRequest(metadata=metadata, sensor_contents=list(readings)), metadata=self._auth))
        return str(reply.binary_data_id)


@asynccontextmanager
async def connect() -> AsyncIterator[Cloud]:
    """Authenticate with the API key in the environment; a missing or refused key is a ConfigError naming the variable."""
    key, key_id = os.environ.get("VIAM_API_KEY", ""), os.environ.get("VIAM_API_KEY_ID", "")
    if not key or not key_id:
        raise ConfigError("", "VIAM_API_KEY", "and VIAM_API_KEY_ID must both be set to reach Viam's app",
                          "create an API key in the Viam app (organization settings) and export both")
    app = app_address()
    try:
        options = DialOptions.with_api_key(key, key_id)
    except ValueError:
        raise ConfigError("", "VIAM_API_KEY_ID", "is not an API key id (a UUID)",
                          "copy the key id shown beside the key in the Viam app") from None
    host = app.rsplit(":", 1)[0]
    options.insecure = host in _LOOPBACK or app.startswith("/")  # plaintext only to a local stand-in
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            client = await ViamClient.create_from_dial_options(options, app_url=app)
    except _TRANSPORT_ERRORS as exc:
        raise _map_error(exc, app) from exc
    try:
        yield Cloud(app, client)
    finally:
        client.close()
