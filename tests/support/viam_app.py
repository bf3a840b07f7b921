"""A local stand-in of Viam's app for the cloud tests: a grpclib server on 127.0.0.1 serving the auth, data, dataset and
data-sync services from viam-sdk's own generated bases, keeping everything it is sent in memory and answering filters and
pages from it. `ViamClient` reaches it exactly as it reaches app.viam.com (labelsieve is pointed at it through
`LABELSIEVE_VIAM_APP`), so the code under test takes no test-only argument.

It runs on its own thread and event loop, so a test can drive it while the code under test runs in the test's thread or
in a subprocess. `hold_uploads_after(n)` makes the (n+1)th upload wait until released, before or after storing it: a
client killed meanwhile has sent a request the app never stored (a connection dropped mid-upload), or one it stored
without the client hearing so (the window no idempotency key closes).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from viam.proto.app.data import (
    AddBinaryDataToDatasetByIDsResponse,
    AddBoundingBoxToImageByIDResponse,
    Annotations,
    BinaryData,
    BinaryDataByFilterResponse,
    BinaryDataByIDsResponse,
    BinaryMetadata,
    BoundingBox,
    CaptureMetadata,
    Filter,
    UnimplementedDataServiceBase,
)
from viam.proto.app.dataset import (
    CreateDatasetResponse,
    Dataset,
    ListDatasetsByIDsResponse,
    ListDatasetsByOrganizationIDResponse,
    UnimplementedDatasetServiceBase,
)
from viam.proto.app.datasync import (
    DataCaptureUploadResponse,
    DataType,
    SensorData,
    StreamingDataCaptureUploadResponse,
    UnimplementedDataSyncServiceBase,
    UploadMetadata,
)
from viam.proto.rpc.auth import AuthenticateResponse, UnimplementedAuthServiceBase

__all__ = ["KEY", "KEY_ID", "ORG", "PART", "ViamApp", "viam_app"]

KEY_ID = "9a7b7c1e-5d0f-4a55-9a53-0a1b2c3d4e5f"
KEY = "stand-in-secret-key-0123456789"
ORG, LOCATION, ROBOT, PART = "org-1", "loc-1", "robot-1", "part-1"


@dataclass
class ViamApp:
    """What the app holds: binary data (metadata, bytes), datasets, and every upload request in arrival order."""

    binaries: dict[str, BinaryData] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    uploads: list[UploadMetadata] = field(default_factory=list)
    streamed: int = 0  # uploads that came as a stream of chunks
    max_reply_bytes: int = 1 << 30  # a BinaryDataByIDs answer larger than this is refused, as the app refuses one
    port: int = 0
    _token: str = "token-" + uuid.uuid4().hex
    _hold_after: int | None = None
    _store_first: bool = False
    held: threading.Event = field(default_factory=threading.Event)  # set when an upload is being held
    settled: threading.Event = field(default_factory=threading.Event)  # set when the held upload was stored or dropped

    def hold_uploads_after(self, n: int, *, stored: bool = False) -> None:
        """Hold the (n+1)th upload before it is stored, or (`stored`) after storing it, before answering."""
        self._hold_after, self._store_first = n, stored

    def release(self) -> None:
        self._hold_after = None

    def env(self) -> dict[str, str]:
        return {"LABELSIEVE_VIAM_APP": f"127.0.0.1:{self.port}", "VIAM_API_KEY": KEY, "VIAM_API_KEY_ID": KEY_ID,
                "VIAM_PRIMARY_ORG_ID": ORG, "VIAM_MACHINE_PART_ID": PART}

    def add_image(self, data: bytes, *, component: str = "cam", method: str = "ReadImage", tags: tuple[str, ...] = (),
                  boxes: tuple[tuple[str, float, float, float, float], ...] = (), seconds: int = 1_700_000_000,
                  mime: str = "image/jpeg") -> str:
        """Binary data as if a machine had synced it; returns its id."""
        meta = UploadMetadata(part_id=PART, component_type="rdk:component:camera", component_name=component,
                              method_name=method, type=DataType.DATA_TYPE_BINARY_SENSOR, tags=list(tags), mime_type=mime,
                              file_extension=".jpeg")
        reading = SensorData(binary=data)
        reading.metadata.time_requested.FromSeconds(seconds)
        reading.metadata.time_received.FromSeconds(seconds)
        for label, *xyxy in boxes:
            reading.metadata.annotations.bboxes.append(BoundingBox(
                label=label, x_min_normalized=xyxy[0], y_min_normalized=xyxy[1], x_max_normalized=xyxy[2],
                y_max_normalized=xyxy[3]))
        return self._store(meta, reading)

    def add_dataset(self, name: str, binary_ids: list[str]) -> str:
        dataset_id = uuid.uuid4().hex[:24]
        self.datasets[dataset_id] = Dataset(id=dataset_id, name=name, organization_id=ORG)
        for binary_id in binary_ids:
            self.binaries[binary_id].metadata.dataset_ids.append(dataset_id)
        return dataset_id

    def boxes(self, binary_id: str) -> list[tuple[str, float, float, float, float, float | None]]:
        return [(b.label, b.x_min_normalized, b.y_min_normalized, b.x_max_normalized, b.y_max_normalized,
                 b.confidence if b.HasField("confidence") else None)
                for b in self.binaries[binary_id].metadata.annotations.bboxes]

    # -- what the services do --------------------------------------------------------------------------------------

    def _check(self, stream: Stream[Any, Any]) -> None:
        if stream.metadata.get("authorization") != f"Bearer {self._token}":
            raise GRPCError(Status.UNAUTHENTICATED, "missing or wrong access token")

    def _store(self, meta: UploadMetadata, reading: SensorData) -> str:
        if meta.type == DataType.DATA_TYPE_BINARY_SENSOR and not reading.binary:
            raise GRPCError(Status.INVALID_ARGUMENT, "binary sensor data is empty")
        binary_id = f"{ORG}/{LOCATION}/{uuid.uuid4().hex[:24]}"
        annotations = Annotations()
        annotations.CopyFrom(reading.metadata.annotations)
        for box in annotations.bboxes:
            box.id = uuid.uuid4().hex[:12]  # the app assigns its own ids
        now = Timestamp()
        now.GetCurrentTime()
        self.binaries[binary_id] = BinaryData(binary=reading.binary, metadata=BinaryMetadata(
            binary_data_id=binary_id, capture_metadata=CaptureMetadata(
                organization_id=ORG, location_id=LOCATION, robot_id=ROBOT, robot_name="robot", part_id=meta.part_id,
                part_name="robot-main", component_type=meta.component_type, component_name=meta.component_name,
                method_name=meta.method_name, tags=meta.tags, mime_type=meta.mime_type),
            time_requested=reading.metadata.time_requested, time_received=now, file_ext=meta.file_extension,
            annotations=annotations, dataset_ids=meta.dataset_ids, file_size_bytes=len(reading.binary)))
        return binary_id

    def _matches(self, f: Filter, m: BinaryMetadata) -> bool:
        c = m.capture_metadata
        plain = {"component_name": c.component_name, "component_type": c.component_type, "method": c.method_name,
                 "robot_name": c.robot_name, "robot_id": c.robot_id, "part_name": c.part_name, "part_id": c.part_id}
        if any(getattr(f, key) and getattr(f, key) != value for key, value in plain.items()):
            return False
        if (f.location_ids and c.location_id not in f.location_ids) or \
                (f.organization_ids and c.organization_id not in f.organization_ids) or \
                (f.mime_type and c.mime_type not in f.mime_type) or (f.dataset_id and f.dataset_id not in m.dataset_ids):
            return False
        if f.tags_filter.tags and not set(f.tags_filter.tags) & set(c.tags):
            return False
        if f.bbox_labels and not set(f.bbox_labels) & {b.label for b in m.annotations.bboxes}:
            return False
        t = m.time_requested.ToNanoseconds()
        if f.interval.HasField("start") and t < f.interval.start.ToNanoseconds():
            return False
        return not (f.interval.HasField("end") and t > f.interval.end.ToNanoseconds())

    def _view(self, binary_id: str, include_binary: bool) -> BinaryData:
        item = self.binaries[binary_id]
        return BinaryData(binary=item.binary if include_binary else b"", metadata=item.metadata)

    @contextmanager
    def serve(self) -> Iterator[ViamApp]:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        server: Server

        def run() -> None:
            nonlocal server
            asyncio.set_event_loop(loop)
            server = Server([_Auth(self), _Data(self), _Dataset(self), _Sync(self)])  # binds to the running loop
            loop.run_until_complete(server.start("127.0.0.1", self.port))
            self.port = server._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True, name="viam-app")
        thread.start()
        ready.wait(30)
        try:
            yield self
        finally:
            self._hold_after = None
            loop.call_soon_threadsafe(server.close)
            asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)


@contextmanager
def viam_app(port: int = 0) -> Iterator[ViamApp]:
    with ViamApp(port=port).serve() as app:
        yield app


class _Auth(UnimplementedAuthServiceBase):
    def __init__(self, app: ViamApp) -> None:
        self.app = app

    async def Authenticate(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.entity != KEY_ID or request.credentials.payload != KEY or request.credentials.type != "api-key":
            raise GRPCError(Status.UNAUTHENTICATED, "invalid credentials")
        await stream.send_message(AuthenticateResponse(access_token=self.app._token))


async def _request(app: ViamApp, stream: Stream[Any, Any]) -> Any:
    app._check(stream)
    request = await stream.recv_message()
    assert request is not None
    return request


class _Data(UnimplementedDataServiceBase):
    def __init__(self, app: ViamApp) -> None:
        self.app = app

    async def BinaryDataByFilter(self, stream: Stream[Any, Any]) -> None:
        request = await _request(self.app, stream)
        dr = request.data_request
        ids = [i for i, item in self.app.binaries.items() if self.app._matches(dr.filter, item.metadata)]
        start = ids.index(dr.last) + 1 if dr.last in ids else 0
        page = ids[start:start + min(dr.limit or 50, 100)]
        await stream.send_message(BinaryDataByFilterResponse(
            data=[self.app._view(i, request.include_binary) for i in page], count=len(page),
            last=page[-1] if page else ""))

    async def BinaryDataByIDs(self, stream: Stream[Any, Any]) -> None:
        request = await _request(self.app, stream)
        found = [i for i in request.binary_data_ids if i in self.app.binaries]
        if request.include_binary and sum(len(self.app.binaries[i].binary) for i in found) > self.app.max_reply_bytes:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, "INCLUDE_BINARY_TOO_LARGE")
        await stream.send_message(BinaryDataByIDsResponse(data=[
            self.app._view(i, request.include_binary) for i in request.binary_data_ids if i in self.app.binaries]))

    async def AddBoundingBoxToImageByID(self, stream: Stream[Any, Any]) -> None:
        r = await _request(self.app, stream)
        values = (r.x_min_normalized, r.y_min_normalized, r.x_max_normalized, r.y_max_normalized)
        if r.binary_data_id not in self.app.binaries:
            raise GRPCError(Status.NOT_FOUND, f"no binary data {r.binary_data_id}")
        if not all(0.0 <= v <= 1.0 for v in values) or values[0] >= values[2] or values[1] >= values[3]:
            raise GRPCError(Status.INVALID_ARGUMENT, "bounding box out of range")
        box = BoundingBox(id=uuid.uuid4().hex[:12], label=r.label, x_min_normalized=values[0], y_min_normalized=values[1],
                          x_max_normalized=values[2], y_max_normalized=values[3])
        if r.HasField("confidence"):
            box.confidence = r.confidence
        self.app.binaries[r.binary_data_id].metadata.annotations.bboxes.append(box)
        await stream.send_message(AddBoundingBoxToImageByIDResponse(bbox_id=box.id))

    async def AddBinaryDataToDatasetByIDs(self, stream: Stream[Any, Any]) -> None:
        r = await _request(self.app, stream)
        if r.dataset_id not in self.app.datasets:
            raise GRPCError(Status.NOT_FOUND, f"no dataset {r.dataset_id}")
        for binary_id in r.binary_data_ids:
            meta = self.app.binaries[binary_id].metadata
            if r.dataset_id not in meta.dataset_ids:
                meta.dataset_ids.append(r.dataset_id)
        await stream.send_message(AddBinaryDataToDatasetByIDsResponse())


class _Dataset(UnimplementedDatasetServiceBase):
    def __init__(self, app: ViamApp) -> None:
        self.app = app

    async def CreateDataset(self, stream: Stream[Any, Any]) -> None:
        r = await _request(self.app, stream)
        if any(d.name == r.name and d.organization_id == r.organization_id for d in self.app.datasets.values()):
            raise GRPCError(Status.ALREADY_EXISTS, f"a dataset named {r.name} exists")
        dataset_id = uuid.uuid4().hex[:24]
        self.app.datasets[dataset_id] = Dataset(id=dataset_id, name=r.name, organization_id=r.organization_id)
        await stream.send_message(CreateDatasetResponse(id=dataset_id))

    async def ListDatasetsByIDs(self, stream: Stream[Any, Any]) -> None:
        r = await _request(self.app, stream)
        await stream.send_message(ListDatasetsByIDsResponse(
            datasets=[self.app.datasets[i] for i in r.ids if i in self.app.datasets]))

    async def ListDatasetsByOrganizationID(self, stream: Stream[Any, Any]) -> None:
        r = await _request(self.app, stream)
        await stream.send_message(ListDatasetsByOrganizationIDResponse(
            datasets=[d for d in self.app.datasets.values() if d.organization_id == r.organization_id]))


class _Sync(UnimplementedDataSyncServiceBase):
    def __init__(self, app: ViamApp) -> None:
        self.app = app

    async def _admit(self, stored: bool) -> None:
        """Hold an upload past the set count until the test lets it go (or kills its client)."""
        if self.app._hold_after is not None and stored == self.app._store_first and \
                len(self.app.uploads) - stored >= self.app._hold_after:
            self.app.held.set()
            try:
                while self.app._hold_after is not None:  # released from the test's thread
                    await asyncio.sleep(0.01)
            finally:
                self.app.settled.set()

    async def DataCaptureUpload(self, stream: Stream[Any, Any]) -> None:
        request = await _request(self.app, stream)
        await self._admit(stored=False)
        ids = [self.app._store(request.metadata, reading) for reading in request.sensor_contents]
        self.app.uploads.append(request.metadata)
        await self._admit(stored=True)
        self.app.settled.set()
        await stream.send_message(DataCaptureUploadResponse(binary_data_id=ids[0] if ids else ""))

    async def StreamingDataCaptureUpload(self, stream: Stream[Any, Any]) -> None:
        self.app._check(stream)
        first = await stream.recv_message()
        assert first is not None
        payload = b"".join([message.data async for message in stream])
        await self._admit(stored=False)
        reading = SensorData(metadata=first.metadata.sensor_metadata, binary=payload)
        binary_id = self.app._store(first.metadata.upload_metadata, reading)
        self.app.uploads.append(first.metadata.upload_metadata)
        self.app.streamed += 1
        await self._admit(stored=True)
        await stream.send_message(StreamingDataCaptureUploadResponse(binary_data_id=binary_id))
