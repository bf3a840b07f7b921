"""The data manager's core: viam-server's builtin `rdk:service:data_manager`, in plain Python that the runtime hosts.

Each capture method a resource opts into (its `service_configs`) gets one collector task that calls the resource through its
SDK client at `capture_frequency_hz` and writes what viam-server's collectors write (rdk `data/`, `components/camera/
collectors.go`, `services/vision/collectors.go`), so a dataset reader cannot tell the two apart. A periodic task syncs closed
files to `sync_url` (any fsspec URL; viam-server ignores the key and syncs to Viam's cloud instead).

Only binary methods are captured (CaptureAllFromCamera, GetImages, ReadImage): one SensorData per file, so
`maximum_capture_file_size_bytes`, which bounds tabular files only, is accepted and has nothing to bound yet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, cast

import fsspec
from fsspec.core import split_protocol
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.struct_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib import GRPCError, Status
from viam.components.camera.client import CameraClient
from viam.errors import NoCaptureToStoreError
from viam.proto.app.data import Annotations
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData, SensorMetadata
from viam.proto.component.camera import CameraServiceStub, GetImagesRequest, Image
from viam.resource.base import ResourceBase
from viam.utils import dict_to_struct

from labelsieve.attributes import Attributes, FieldProblem, did_you_mean, resolve_path
from labelsieve.capture.format import STUCK_AFTER_S, as_annotations, capture_dir_for, from_ignore_rows, recover_stuck, write_capture
from labelsieve.capture.sync import SyncBusy, SyncReport, sync
from labelsieve.errors import ConfigError, InputError, LabelsieveError, SourceExhausted
from labelsieve.viam.convert import detections_from_viam

__all__ = ["VISION", "CaptureMethod", "DataManager", "DataManagerConfig", "Reading"]

log = logging.getLogger(__name__)
T = TypeVar("T")

VISION, CAMERA = "rdk:service:vision", "rdk:component:camera"
#: What viam-server can capture from the two APIs labelsieve knows, and which of those labelsieve captures.
_VIAM_METHODS = {VISION: ("CaptureAllFromCamera", "DoCommand"),
                 CAMERA: ("GetImages", "ReadImage", "NextPointCloud", "DoCommand", "GetWorldPose")}
_SUPPORTED = {VISION: ("CaptureAllFromCamera",), CAMERA: ("GetImages", "ReadImage")}
_METHOD_KEYS = frozenset({"method", "capture_frequency_hz", "additional_params", "disabled"})
#: viam-server's capture method keys that change nothing here: queue sizes, per-method `tags` (viam-server uses only the
#: data manager's), `capture_directory` (viam-server overwrites it with the data manager's), `name` (older configs).
_VIAM_METHOD_KEYS = frozenset({"name", "capture_queue_size", "capture_buffer_size", "tags", "capture_directory"})
_FROM_DATA_MANAGEMENT = {"fromDataManagement": True}  # what viam-server's collectors pass as `extra`
_NO_CAPTURE = "no capture from filter module"  # viam-server drops a frame on FAILED_PRECONDITION with this text
_SAME_ERROR_QUIET_S = 30.0
_CALL_TIMEOUT_S = 60.0  # viam-server sets none; a VLM-verified capture on a CPU can take tens of seconds


def known_keys(resource: str, where: str, given: Mapping[str, Any], known: Collection[str]) -> dict[str, Any]:
    """`given` without the keys labelsieve does not know, each logged with a suggestion: viam-server ignores unknown
    keys, so a config written for it must load here too."""
    for key in sorted(given.keys() - set(known)):
        log.warning("%s: unknown key '%s.%s' ignored (as viam-server does) %s", resource, where, key,
                    did_you_mean(key, known) or f"known: {', '.join(sorted(known))}")
    return {key: value for key, value in given.items() if key in known}


def _default_capture_dir() -> str:
    return str(Path(os.environ["VIAM_HOME"]) / "capture") if os.environ.get("VIAM_HOME") else "~/.viam/capture"


@dataclass(frozen=True)
class DataManagerConfig(Attributes):
    """viam-server's data manager attributes, plus `sync_url`.

    Keys viam-server knows and labelsieve does not implement (disk-full deletion, mongo, selective sync, ...) are accepted
    and logged; any other unknown key is a warning with a suggestion, not an error, because viam-server ignores unknown keys
    and a config written for it must load here too.
    """

    #: Where captures go; default `$VIAM_HOME/capture`, else `~/.viam/capture`, as viam-server.
    capture_dir: str = ""
    #: Written into every file's header (viam-server uses these, not per-method tags).
    tags: tuple[str, ...] = ()
    #: Minutes between syncs; 0 means viam-server's default of 0.1 (6 s).
    sync_interval_mins: float = 0.0
    capture_disabled: bool = False
    sync_disabled: bool = False
    #: Bounds tabular files only; every method labelsieve captures is binary (one reading per file).
    maximum_capture_file_size_bytes: int = 262144
    #: labelsieve only: any fsspec URL (a folder, `s3://bucket/prefix`, `gs://...`), or `viam://` (Viam's app, as
    #: viam-server syncs; `viam://?part=<part id>` unless VIAM_MACHINE_PART_ID is set). Empty: no sync.
    sync_url: str = ""

    ignored_keys: ClassVar[frozenset[str]] = frozenset({
        "mongo_capture_config", "delete_every_nth_when_disk_full", "disk_usage_deletion_threshold",
        "capture_dir_deletion_threshold", "additional_sync_paths", "file_last_modified_millis", "maximum_num_sync_threads",
        "selective_syncer_name", "capture_control_sensor"})

    @classmethod
    def parse(cls, resource: str, attributes: Mapping[str, Any] | None = None) -> Self:
        attributes = known_keys(resource, "attributes", attributes or {},
                                {f.name for f in dataclasses.fields(cls)} | cls.ignored_keys)
        for key in sorted(attributes.keys() & cls.ignored_keys):
            log.info("%s: viam-server's '%s' is not implemented by labelsieve; ignored", resource, key)
        parsed = super().parse(resource, attributes)
        if parsed.capture_dir and not Path(parsed.capture_dir).expanduser().is_absolute():
            log.warning("%s: capture_dir %r is relative: labelsieve resolves it against the config's folder, viam-server "
                        "against its own working directory; give an absolute path so both write to %s",
                        resource, parsed.capture_dir, parsed.capture_path)
        return parsed

    def check(self) -> None:
        if self.sync_interval_mins < 0:
            raise FieldProblem("sync_interval_mins", f"can't be negative, got {self.sync_interval_mins}")
        if self.maximum_capture_file_size_bytes < 0:
            raise FieldProblem("maximum_capture_file_size_bytes",
                               f"can't be negative, got {self.maximum_capture_file_size_bytes}")
        if self.sync_url.startswith("viam://"):  # Viam's app, as viam-server syncs (labelsieve.cloud.sync)
            from labelsieve.cloud.sync import viam_sync_target

            try:
                viam_sync_target(self.sync_url)
            except InputError as exc:
                raise FieldProblem("sync_url", str(exc)) from None
        elif self.sync_url:
            protocol = split_protocol(self.sync_url)[0] or "file"
            try:
                fsspec.get_filesystem_class(protocol)
            except (ImportError, ValueError) as exc:
                raise FieldProblem("sync_url", f"cannot write to {protocol}:// here: {exc}",
                                   "install the fsspec backend it names, or use a folder or s3:// URL") from None

    @property
    def capture_path(self) -> Path:
        # viam-server replaces every ':' in the whole path, capture_dir included (CaptureFilePathWithReplacedReservedChars)
        return Path(str(resolve_path(self.capture_dir or _default_capture_dir())).replace(":", "_"))

    @property
    def sync_target(self) -> str:
        """`sync_url`, a relative folder resolved like `capture_dir`."""
        return self.sync_url if split_protocol(self.sync_url)[0] else str(resolve_path(self.sync_url))

    @property
    def sync_interval_s(self) -> float:
        return 60 * (self.sync_interval_mins if self.sync_interval_mins >= 0.0001 else 0.1)  # viam-server's default


@dataclass(frozen=True)
class CaptureMethod(Attributes):
    """One `capture_methods` entry of a resource's data_manager service config, parsed like any attributes (so a mistake
    names the resource and the field), plus the resource and API it belongs to."""

    method: str
    capture_frequency_hz: float = 0.0
    additional_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    disabled: bool = False
    api: str = ""  # the resource's API, set by from_service_configs
    resource: str = ""  # the resource's short name, set by from_service_configs

    ignored_keys: ClassVar[frozenset[str]] = _VIAM_METHOD_KEYS

    @classmethod
    def from_service_configs(cls, resource_name: str, api: str, service_configs: Sequence[Any]) -> list[CaptureMethod]:
        """Parse every data_manager entry; a wrong method, parameter or frequency is a ConfigError naming the field.

        Methods viam-server captures and labelsieve does not (DoCommand, NextPointCloud, any API but camera and vision) are
        skipped with a warning, so a config written for viam-server still loads."""
        if not isinstance(service_configs, (list, tuple)):
            raise ConfigError(resource_name, "service_configs", f"must be a list, got {service_configs!r}")
        methods: list[CaptureMethod] = []
        for i, entry in enumerate(service_configs):
            where = f"service_configs[{i}]"
            if not isinstance(entry, Mapping):
                raise ConfigError(resource_name, where, f"must be an object, got {entry!r}")
            if entry.get("type") != "data_manager":
                continue
            attributes = entry.get("attributes") or {}
            raw = attributes.get("capture_methods", []) if isinstance(attributes, Mapping) else None
            if not isinstance(raw, list):
                raise ConfigError(resource_name, f"{where}.attributes.capture_methods", f"must be a list, got {raw!r}")
            for j, item in enumerate(raw):
                method = cls._parse(resource_name, api, item, f"{where}.attributes.capture_methods[{j}]")
                if method is not None:
                    methods.append(method)
        return methods

    @classmethod
    def _parse(cls, resource: str, api: str, item: Any, where: str) -> CaptureMethod | None:
        if not isinstance(item, Mapping):
            raise ConfigError(resource, where, f"must be an object, got {item!r}")
        name = item.get("method")
        if api not in _VIAM_METHODS:
            log.warning("%s: labelsieve captures only from cameras and vision services; %s %s is not captured",
                        resource, api, name)
            return None
        if name in _VIAM_METHODS[api] and name not in _SUPPORTED[api]:
            log.warning("%s: viam-server's %s capture is not implemented by labelsieve; skipped", resource, name)
            return None
        try:
            method = cls.parse(resource, {**known_keys(resource, where, item, _METHOD_KEYS | cls.ignored_keys),
                                          "api": api})
        except ConfigError as exc:  # the field inside the entry, named from the resource's config
            raise ConfigError(resource, f"{where}.{exc.field.removeprefix('attributes.')}", exc.problem, exc.fix) from None
        return dataclasses.replace(method, resource=resource)

    def check(self) -> None:
        known = _VIAM_METHODS.get(self.api, ())
        if self.method not in known:
            raise FieldProblem("method", f"{self.method!r} is not a capture method of {self.api}",
                               did_you_mean(self.method, known) or f"one of {', '.join(_SUPPORTED.get(self.api, ()))}")
        if not math.isfinite(self.capture_frequency_hz) or self.capture_frequency_hz < 0:
            raise FieldProblem("capture_frequency_hz", f"must be a number of captures per second, got "
                               f"{self.capture_frequency_hz!r}", "0.2: every 5 s; 0 disables it")
        try:
            self._check_params()
        except FieldProblem as exc:
            raise FieldProblem(f"additional_params.{exc.field}", exc.problem, exc.fix) from None

    def _check_params(self) -> None:
        params = self.additional_params
        if self.method == "CaptureAllFromCamera":
            if not isinstance(params.get("camera_name"), str) or not params["camera_name"]:
                raise FieldProblem("camera_name", f"is required, got {params.get('camera_name')!r}",
                                   "name the camera the vision service reads, e.g. {\"camera_name\": \"cam\"}")
            _min_confidence(params.get("min_confidence_score", 0.0))
        if not isinstance(params.get("mime_type", ""), str):
            raise FieldProblem("mime_type", f"must be a string, got {params['mime_type']!r}", "image/jpeg or image/png")
        names = params.get("filter_source_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FieldProblem("filter_source_names", f"must be a list of strings, got {names!r}")

    @property
    def key(self) -> str:
        return f"{self.api}/{self.resource}/{self.method}"

    @property
    def min_confidence_score(self) -> float:
        return _min_confidence(self.additional_params.get("min_confidence_score", 0.0))

    @property
    def file_extension(self) -> str:
        """As viam-server's getFileExt: "" for GetImages and CaptureAllFromCamera; for ReadImage from the *configured*
        `mime_type` parameter (not the image's), so ReadImage without one writes ""."""
        if self.method != "ReadImage":
            return ""
        extensions = {"image/jpeg": ".jpeg", "image/png": ".png", "pointcloud/pcd": ".pcd"}
        return extensions.get(str(self.additional_params.get("mime_type", "")), "")

    def header(self, tags: Sequence[str], mime_type: str) -> DataCaptureMetadata:
        return DataCaptureMetadata(component_type=self.api, component_name=self.resource, method_name=self.method,
                                   type=DataType.DATA_TYPE_BINARY_SENSOR, file_extension=self.file_extension,
                                   method_parameters=_method_parameters(self.additional_params), tags=list(tags),
                                   mime_type=mime_type)


def _min_confidence(raw: Any) -> float:
    """Boxes and classes under this are dropped. viam-server's configs carry it as a string ("0.5"), which current rdk
    reads as 0 (Value.GetNumberValue of a string value), keeping every box; labelsieve honours the number written."""
    try:
        score = math.nan if isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError):
        score = math.nan
    if not 0.0 <= score <= 1.0:
        raise FieldProblem("min_confidence_score", f"must be between 0 and 1, got {raw!r}", "e.g. \"0.5\"")
    return score


def _method_parameters(params: Mapping[str, Any]) -> dict[str, AnyProto]:
    """Each parameter as Any(google.protobuf.Value), as rdk's protoutils.ConvertMapToProtoAny."""
    out: dict[str, AnyProto] = {}
    for key, value in params.items():
        packed = AnyProto()
        packed.Pack(json_format.ParseDict(value, Value()))
        out[key] = packed
    return out


@dataclass(frozen=True)
class Reading:
    """One image to store: what a collector produced, before it becomes a file."""

    data: bytes
    mime_type: str
    annotations: Annotations
    requested: datetime
    received: datetime

    def sensor_data(self) -> SensorData:
        requested, received = Timestamp(), Timestamp()
        requested.FromDatetime(self.requested)
        received.FromDatetime(self.received)
        metadata = SensorMetadata(time_requested=requested, time_received=received)
        if self.annotations.bboxes or self.annotations.classifications:  # viam-server leaves empty annotations unset
            metadata.annotations.CopyFrom(self.annotations)
        return SensorData(metadata=metadata, binary=self.data)


def _now() -> datetime:
    return datetime.now(UTC)


async def _capture_all_from_camera(method: CaptureMethod, vision: Any) -> list[Reading]:
    requested, min_score = _now(), method.min_confidence_score
    result = await vision.capture_all_from_camera(method.additional_params["camera_name"], return_image=True,
                                                  return_classifications=True, return_detections=True,
                                                  extra=_FROM_DATA_MANAGEMENT)
    image = result.image
    if image is None or not image.data:
        raise InputError("vision service didn't return an image")
    width, height = image.width, image.height
    if not width or not height:
        raise InputError(f"cannot read the size of the {image.mime_type} image the vision service returned")
    provenance = (result.extra or {}).get("provenance")
    provenance = [dict(p) if isinstance(p, Mapping) and p else None for p in provenance] \
        if isinstance(provenance, list) else []
    found = detections_from_viam(result.detections or [], width=width, height=height)
    found = found.with_provenance([provenance[i] if i < len(provenance) else None for i in range(len(found))])
    if (ignore := (result.extra or {}).get("ignore")) is not None:  # the filter's unresolved asked-about boxes
        found = found.with_metadata(ignore=from_ignore_rows(ignore, width, height))
    if isinstance(chosen := (result.extra or {}).get("frame"), Mapping):  # why the student sent it to the teacher
        found = found.with_metadata(student={k: v for k, v in chosen.items() if k != "kept"})
    annotations = as_annotations(found[found.confidence >= min_score], width, height)
    for c in result.classifications or []:
        if c.confidence >= min_score:
            annotations.classifications.add(label=c.class_name, confidence=c.confidence)
    return [Reading(image.data, str(image.mime_type), annotations, requested, _now())]


async def _camera_images(method: CaptureMethod, camera: Any) -> tuple[list[Image], datetime]:
    """The camera's images with their annotations and its capture time (viam-server's time_received for cameras).

    The SDK's `CameraClient.get_images` drops each image's annotations, so a client is asked through its stub."""
    names = method.additional_params.get("filter_source_names", []) if method.method == "GetImages" else []
    if isinstance(camera, CameraClient):
        request = GetImagesRequest(name=camera.name, filter_source_names=names, extra=dict_to_struct(_FROM_DATA_MANAGEMENT))
        response = await cast(CameraServiceStub, camera.client).GetImages(request)
        images, metadata = list(response.images), response.response_metadata
    else:
        named, metadata = await camera.get_images(filter_source_names=names or None, extra=_FROM_DATA_MANAGEMENT)
        images = [Image(source_name=n.name, image=n.data, mime_type=str(n.mime_type)) for n in named]
    # A camera that leaves captured_at unset gets 1970-01-01 from viam-server (Go's AsTime of a nil Timestamp); we use now.
    captured = metadata.captured_at.ToDatetime(UTC) if metadata.HasField("captured_at") else _now()
    return images, captured


async def _get_images(method: CaptureMethod, camera: Any) -> list[Reading]:
    requested = _now()
    images, received = await _camera_images(method, camera)
    readings = []
    for image in images:
        annotations = Annotations()
        annotations.CopyFrom(image.annotations)
        annotations.classifications.add(label=image.source_name)  # viam-server labels each image with its source name
        readings.append(Reading(image.image, image.mime_type, annotations, requested, received))
    return readings


async def _read_image(method: CaptureMethod, camera: Any) -> list[Reading]:
    requested = _now()
    images, received = await _camera_images(method, camera)
    if not images:
        raise InputError("no images returned from camera")
    wanted = method.additional_params.get("mime_type") or "image/jpeg"  # viam-server's default choice
    image = next((i for i in images if i.mime_type == wanted), images[0])
    return [Reading(image.image, image.mime_type, image.annotations, requested, received)]


_COLLECTORS: dict[str, Callable[[CaptureMethod, Any], Awaitable[list[Reading]]]] = {
    "CaptureAllFromCamera": _capture_all_from_camera, "GetImages": _get_images, "ReadImage": _read_image}


def _exhausted(exc: BaseException) -> bool:
    """A source with no more frames: OUT_OF_RANGE through gRPC (how a labelsieve camera answers `SourceExhausted`)."""
    return isinstance(exc, SourceExhausted) or (isinstance(exc, GRPCError) and exc.status == Status.OUT_OF_RANGE)


def _filtered(exc: BaseException) -> bool:
    """viam-server's IsNoCaptureToStoreError: FAILED_PRECONDITION whose message contains the filter's text."""
    if isinstance(exc, NoCaptureToStoreError):
        return True
    return isinstance(exc, GRPCError) and exc.status == Status.FAILED_PRECONDITION and _NO_CAPTURE in str(exc.message)


@dataclass
class _Stats:
    captured: int = 0  # files written
    filtered: int = 0  # frames a filter declined (NoCaptureToStoreError)
    errors: int = 0
    last_error: str = ""
    failed_writes: int = 0  # in a row, since the last file written
    ended: str = ""  # why the collector stopped for good (its source has no more frames)
    #: message -> (when last logged, repeats since), per message as viam-server's lastLoggedErrors, so alternating
    #: failures are quieted too; bounded, since a message may carry changing details.
    logged: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)


class DataManager:
    """Collector tasks plus periodic sync. `start()` begins, `close()` ends; both run on the caller's event loop and never
    block it (calls are awaited, files are written in a thread)."""

    def __init__(self, name: str, config: DataManagerConfig, methods: Sequence[CaptureMethod],
                 resources: Mapping[str, ResourceBase]) -> None:
        self.name, self.config = name, config
        self.methods = tuple(methods)
        self.resources = dict(resources)
        self._stats = {m.key: _Stats() for m in self.methods}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Future[Any]] = set()  # thread work close() waits for: file writes, a sync
        self._sync_lock = asyncio.Lock()
        self._stop_sync: concurrent.futures.Future[None] = concurrent.futures.Future()  # ends a sync in progress at once
        self._files_synced = 0
        self._recovered = 0  # stuck `.prog` files finished
        self._last_sync: SyncReport | None = None
        self._closed = False

    async def start(self) -> None:
        if self._tasks or self._closed:
            return
        if self.config.capture_disabled:
            log.info("%s: capture_disabled: no collectors", self.name)
        for method in () if self.config.capture_disabled else self.methods:
            if method.disabled or method.capture_frequency_hz <= 0:  # as viam-server: a disabled collector, not an error
                log.info("%s: %s is disabled (disabled: %s, capture_frequency_hz: %s)", self.name, method.key,
                         method.disabled, method.capture_frequency_hz)
                continue
            resource = self.resources.get(method.resource)
            if resource is None:
                log.error("%s: no resource %r to capture %s from", self.name, method.resource, method.key)
                continue
            log.info("%s: capturing %s at %g Hz into %s", self.name, method.key, method.capture_frequency_hz,
                     capture_dir_for(self.config.capture_path, method.api, method.resource, method.method))
            self._tasks.append(asyncio.create_task(self._collect(method, resource), name=f"capture {method.key}"))
        self._tasks.append(asyncio.create_task(self._recover_periodically(), name=f"{self.name} recovery"))
        if self.config.sync_url and not self.config.sync_disabled:
            self._tasks.append(asyncio.create_task(self._sync_periodically(), name=f"{self.name} sync"))

    async def _recover_periodically(self) -> None:
        """On start and then every STUCK_AFTER_S: finish `.prog` files a killed writer left (never one being written)."""
        while True:
            if self.config.capture_path.is_dir():
                counts = await self._finish(asyncio.to_thread(recover_stuck, self.config.capture_path))
                self._recovered += counts.get("recovered", 0) + counts.get("cut", 0)
            await asyncio.sleep(STUCK_AFTER_S)

    async def _collect(self, method: CaptureMethod, resource: Any) -> None:
        loop, interval = asyncio.get_running_loop(), 1.0 / method.capture_frequency_hz
        collect, stats = _COLLECTORS[method.method], self._stats[method.key]
        folder = capture_dir_for(self.config.capture_path, method.api, method.resource, method.method)
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                async with asyncio.timeout(max(_CALL_TIMEOUT_S, 2 * interval)):  # a hung resource must not stall it forever
                    readings = await collect(method, resource)
                if not readings or not all(r.data for r in readings):  # viam-server's CaptureResult.Validate
                    raise InputError(f"{method.resource} returned no image data")
            except Exception as exc:  # noqa: BLE001 -- as viam-server: any failure is logged and capture goes on
                if _filtered(exc):
                    stats.filtered += 1
                elif _exhausted(exc):  # a non-looping camera's expected end: not an error, and nothing more to take
                    stats.ended = f"no more frames: {exc.message if isinstance(exc, GRPCError) else exc}"
                    log.info("%s: capturing %s ended: %s", self.name, method.key, stats.ended)
                    return
                else:
                    self._report(method, stats, exc)
            else:
                try:  # a close() mid-write lets the file finish; close() waits for it
                    await self._finish(asyncio.to_thread(self._write, method, folder, readings, stats))
                except OSError as exc:  # a full disk: the failed file is gone; each tick tries again
                    self._write_failed(method, folder, stats, exc)
                else:
                    if stats.failed_writes:
                        log.info("%s: writing %s again, after %d failed writes", self.name, method.key,
                                 stats.failed_writes)
                        stats.failed_writes = 0
            # Like viam-server's time.Ticker: ticks missed during a slow call are dropped, never queued up.
            due += interval * max(1, math.ceil((loop.time() - due) / interval))

    async def _finish(self, work: Awaitable[T]) -> T:
        """Await thread work that a cancellation must not cut short; close() waits for it."""
        future = asyncio.ensure_future(work)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return await asyncio.shield(future)

    def _write(self, method: CaptureMethod, folder: Path, readings: list[Reading], stats: _Stats) -> None:
        for reading in readings:  # binary captures: one file per image, as viam-server's WriteBinary
            write_capture(folder, method.header(self.config.tags, reading.mime_type), [reading.sensor_data()])
            stats.captured += 1

    def _write_failed(self, method: CaptureMethod, folder: Path, stats: _Stats, exc: OSError) -> None:
        """Count it; log only the first failure of a streak (a full disk fails every tick until space returns)."""
        stats.errors += 1
        stats.last_error = f"{type(exc).__name__}: {exc}"
        if not stats.failed_writes:
            log.error("%s: cannot write %s captures into %s: %s (retrying each tick; logged again once writes resume)",
                      self.name, method.key, folder, exc.strerror or exc)
        stats.failed_writes += 1

    def _report(self, method: CaptureMethod, stats: _Stats, exc: BaseException) -> None:
        """Count every failure and log it, an identical one at most every 30 s (viam-server: 2 s) with its repeat count."""
        stats.errors += 1
        detail = exc.message if isinstance(exc, GRPCError) else str(exc)
        message = f"{type(exc).__name__}: {detail or ('no answer in time' if isinstance(exc, TimeoutError) else '')}"
        stats.last_error, now = message, time.monotonic()
        logged, repeats = stats.logged.get(message, (-math.inf, 0))
        if now - logged < _SAME_ERROR_QUIET_S:
            stats.logged[message] = (logged, repeats + 1)
            return
        if len(stats.logged) >= 100:
            stats.logged.clear()
        stats.logged[message] = (now, 0)
        again = f" (and {repeats} more times)" if repeats else ""
        log.error("%s: capturing %s failed%s: %s", self.name, method.key, again, message)

    async def _sync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.sync_interval_s)
            try:
                await self.sync()
            except SyncBusy as exc:
                log.info("%s: sync skipped this round: %s", self.name, exc)
            except LabelsieveError as exc:
                log.warning("%s: sync to %s failed: %s", self.name, self.config.sync_url, exc)
            except Exception:
                log.exception("%s: sync to %s failed", self.name, self.config.sync_url)

    async def sync(self) -> SyncReport:
        """Sync closed files to `sync_url` now (one sync at a time; files being written are `.prog` and wait)."""
        if not self.config.sync_url:
            raise ConfigError(self.name, "attributes.sync_url", "is not set, so there is nowhere to sync to",
                              "set it to a folder or an fsspec URL such as s3://bucket/captures")
        async with self._sync_lock:
            self.config.capture_path.mkdir(parents=True, exist_ok=True)
            report = await self._finish(asyncio.to_thread(sync, self.config.capture_path, self.config.sync_target,
                                                          stop=self._stop_sync))
        self._files_synced += report.synced
        self._last_sync = report
        (log.warning if report.failed or report.conflicts else log.info)("%s: %s", self.name, report.summary())
        return report

    def stats(self) -> dict[str, Any]:
        methods = {key: {"captured": s.captured, "filtered": s.filtered, "errors": s.errors, "last_error": s.last_error,
                         "ended": s.ended}
                   for key, s in self._stats.items()}
        return {"capture_dir": str(self.config.capture_path), "methods": methods, "files_synced": self._files_synced,
                "recovered": self._recovered,
                "last_sync": self._last_sync.summary() if self._last_sync else ""}

    async def close(self) -> None:
        """Idempotent. Stops collectors and sync, then waits for files being written so none is left as `.prog`; never
        for the network (a sync in progress stops at once, leaving its files for the next one)."""
        self._closed = True
        if not self._stop_sync.done():
            self._stop_sync.set_result(None)  # a sync waiting on the network is abandoned, safe as a kill
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)
