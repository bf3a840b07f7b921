"""The data manager core: config parsing as viam-server's, and captures from real module processes written exactly as
viam-server writes them, read back by an independent reader over viam-sdk's protobuf classes."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.struct_pb2 import Value
from support import TEST_MODULES, Machine, camera, connect, eventually, frames_folder, module
from viam.components.camera import Camera
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData
from viam.services.vision import VisionClient

from labelsieve.capture import decode_provenance, write_capture
from labelsieve.capture.manager import CaptureMethod, DataManager, DataManagerConfig
from labelsieve.errors import ConfigError

#: viam-server's file name: local time, microseconds, zone, every ':' -> '_'.
NAME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{6}(Z|[+-]\d\d_\d\d)\.capture$")


def read_framed(path: Path) -> tuple[DataCaptureMetadata, list[SensorData]]:
    """An independent reader: uvarint length + message, the first one the header (Go's pbutil.WriteDelimited)."""
    data, messages, pos = path.read_bytes(), [], 0
    while pos < len(data):
        size = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        messages.append(data[pos : pos + size])
        pos += size
    assert pos == len(data)
    header = DataCaptureMetadata.FromString(messages[0])
    return header, [SensorData.FromString(m) for m in messages[1:]]


def methods_of(resource: dict[str, Any]) -> list[CaptureMethod]:
    return CaptureMethod.from_service_configs(resource["name"], resource["api"], resource["service_configs"])


def capture(*methods: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "data_manager", "attributes": {"capture_methods": list(methods)}}]


def string_value(any_: Any) -> Any:
    value = Value()
    assert any_.Unpack(value)
    return value.WhichOneof("kind"), value.string_value or value.number_value


def test_data_manager_writes_viam_server_files_from_real_modules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = frames_folder(tmp_path / "frames", size=(320, 240))
    cam = {**camera("cam", source=str(frames)), "service_configs": capture(
        {"method": "GetImages", "capture_frequency_hz": 20},
        {"method": "ReadImage", "capture_frequency_hz": 20, "additional_params": {"mime_type": "image/jpeg"}})}
    labeler = {"name": "labeler", "api": "rdk:service:vision", "model": "test:vision:capture-stub",
               "attributes": {"camera_name": "cam", "script": ["keep", "filter", "fail", "slow"]},
               "service_configs": capture({"method": "CaptureAllFromCamera", "capture_frequency_hz": 20,
                                           "capture_queue_size": 5,  # viam-server's, accepted and unused
                                           "additional_params": {"camera_name": "cam", "min_confidence_score": "0.5"}})}
    config = {"modules": [module("media-camera"), module("capture-stub", TEST_MODULES / "capture_stub")],
              "components": [cam], "services": [labeler]}
    dm_config = DataManagerConfig.parse("data_manager", {"capture_dir": str(tmp_path / "capture"), "tags": ["t1", "t2"]})
    methods = methods_of(cam) + methods_of(labeler)

    with Machine(config, tmp_path) as machine:
        async def run() -> dict[str, Any]:
            robot = await connect(machine.address)
            try:
                clients = {"cam": Camera.from_robot(robot, "cam"), "labeler": VisionClient.from_robot(robot, "labeler")}
                manager = DataManager("data_manager", dm_config, methods, clients)
                await manager.start()

                async def enough() -> None:
                    counts = manager.stats()["methods"]
                    assert all(c["captured"] >= 3 for c in counts.values()), counts
                    labeler = counts["rdk:service:vision/labeler/CaptureAllFromCamera"]
                    assert labeler["filtered"] >= 1 and labeler["errors"] >= 2, counts

                await eventually(enough, timeout=30)
                await manager.close()
                await manager.close()  # idempotent
                return manager.stats()
            finally:
                await robot.close()

        stats = asyncio.run(run())

    root = tmp_path / "capture"
    assert not list(root.rglob("*.prog")), "close() leaves no file half written"
    for key, counts in stats["methods"].items():
        api, name, method = key.split("/")
        files = sorted((root / api.replace(":", "_") / name / method).iterdir())
        assert len(files) == counts["captured"], key
        assert all(NAME.match(f.name) for f in files), [f.name for f in files]
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files), "viam-server's file mode"
        for f in files:
            header, readings = read_framed(f)
            assert (header.component_type, header.component_name, header.method_name) == (api, name, method)
            assert header.type == DataType.DATA_TYPE_BINARY_SENSOR
            assert list(header.tags) == ["t1", "t2"] and header.mime_type == "image/jpeg"
            assert len(readings) == 1, "binary captures hold one reading per file"
            reading = readings[0]
            assert reading.binary[:2] == b"\xff\xd8"
            assert reading.metadata.time_requested.ToNanoseconds() <= reading.metadata.time_received.ToNanoseconds() + 10**9
            {"GetImages": check_get_images, "ReadImage": check_read_image,
             "CaptureAllFromCamera": check_capture_all}[method](header, reading)

    labeler_stats = stats["methods"]["rdk:service:vision/labeler/CaptureAllFromCamera"]
    assert labeler_stats["errors"] >= 2 and "unreachable" in labeler_stats["last_error"]
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1, "a repeated error is logged once"
    assert not any("overlapping" in r.getMessage() for r in caplog.records), "a slow call does not pile up calls"


def test_get_images_writes_a_file_per_view_and_read_image_picks_the_mime_type(tmp_path: Path) -> None:
    views = {"name": "views", "api": "rdk:component:camera", "model": "test:camera:two-views", "service_configs": capture(
        {"method": "GetImages", "capture_frequency_hz": 20},
        {"method": "ReadImage", "capture_frequency_hz": 20, "additional_params": {"mime_type": "image/png"}})}
    config = {"modules": [module("capture-stub", TEST_MODULES / "capture_stub")], "components": [views]}
    dm_config = DataManagerConfig.parse("data_manager", {"capture_dir": str(tmp_path / "capture")})

    with Machine(config, tmp_path) as machine:
        async def run() -> None:
            robot = await connect(machine.address)
            try:
                client = Camera.from_robot(robot, "views")
                manager = DataManager("data_manager", dm_config, methods_of(views), {"views": client})
                await manager.start()

                async def enough() -> None:
                    assert all(c["captured"] >= 4 for c in manager.stats()["methods"].values())

                await eventually(enough, timeout=30)
                await manager.close()
            finally:
                await robot.close()

        asyncio.run(run())

    folder = tmp_path / "capture" / "rdk_component_camera" / "views"
    shots = [read_framed(f) for f in sorted((folder / "GetImages").iterdir())]
    labels = [(h.mime_type, r[0].metadata.annotations.classifications[0].label) for h, r in shots]
    assert labels[:4] == [("image/jpeg", "left"), ("image/png", "right")] * 2, "one file per image, in order"
    # no captured_at from this camera: time_received is when the reply came (viam-server writes 1970-01-01 there)
    assert all(r[0].metadata.time_received.ToNanoseconds() > 0 for _, r in shots)
    for f in (folder / "ReadImage").iterdir():
        header, [reading] = read_framed(f)
        assert (header.mime_type, header.file_extension, reading.binary[:4]) == ("image/png", ".png", b"\x89PNG")


def check_get_images(header: DataCaptureMetadata, reading: SensorData) -> None:
    assert header.file_extension == "" and not header.method_parameters
    [source] = reading.metadata.annotations.classifications  # viam-server labels each image with its source name
    assert source.label == "cam" and not source.HasField("confidence")  # the media camera's stable source name
    assert not reading.metadata.annotations.bboxes


def check_read_image(header: DataCaptureMetadata, reading: SensorData) -> None:
    assert header.file_extension == ".jpeg"
    assert string_value(header.method_parameters["mime_type"]) == ("string_value", "image/jpeg")
    assert not reading.metadata.HasField("annotations")


def check_capture_all(header: DataCaptureMetadata, reading: SensorData) -> None:
    assert header.file_extension == ""
    assert string_value(header.method_parameters["camera_name"]) == ("string_value", "cam")
    assert string_value(header.method_parameters["min_confidence_score"]) == ("string_value", "0.5")
    annotations = reading.metadata.annotations
    [box] = annotations.bboxes  # the 0.3 "cat" is under min_confidence_score
    assert (box.label, round(box.confidence, 3)) == ("dog", 0.9)
    corners = (box.x_min_normalized, box.y_min_normalized, box.x_max_normalized, box.y_max_normalized)
    assert corners == pytest.approx((0.25, 0.5, 0.75, 1.0))
    provenance = decode_provenance(box.id)
    assert provenance is not None and provenance["box"] == 0 and provenance["proposer"] == "stub"
    assert [(c.label, round(c.confidence, 3)) for c in annotations.classifications] == [("outdoor", 0.8)]


@pytest.mark.parametrize(("api", "entry", "field", "text"), [
    ("rdk:service:vision", {"method": "CaptureAllFromCam", "capture_frequency_hz": 1},
     "service_configs[0].attributes.capture_methods[1].method", "did you mean 'CaptureAllFromCamera'"),
    ("rdk:component:camera", {"method": "CaptureAllFromCamera", "capture_frequency_hz": 1},
     "service_configs[0].attributes.capture_methods[1].method", "not a capture method of rdk:component:camera"),
    ("rdk:service:vision", {"method": "CaptureAllFromCamera", "capture_frequency_hz": 1, "additional_params": {}},
     "service_configs[0].attributes.capture_methods[1].additional_params.camera_name", "is required"),
    ("rdk:service:vision", {"method": "CaptureAllFromCamera", "capture_frequency_hz": 1,
                            "additional_params": {"camera_name": "cam", "min_confidence_score": "high"}},
     "service_configs[0].attributes.capture_methods[1].additional_params.min_confidence_score", "between 0 and 1"),
    ("rdk:service:vision", {"method": "CaptureAllFromCamera", "capture_frequency_hz": 1,
                            "additional_params": {"camera_name": "cam", "min_confidence_score": 1.5}},
     "service_configs[0].attributes.capture_methods[1].additional_params.min_confidence_score", "between 0 and 1"),
    ("rdk:component:camera", {"method": "GetImages", "capture_frequency_hz": -1},
     "service_configs[0].attributes.capture_methods[1].capture_frequency_hz", "captures per second"),
    ("rdk:component:camera", {"method": "GetImages", "capture_frequency_hz": "fast"},
     "service_configs[0].attributes.capture_methods[1].capture_frequency_hz", "must be a number"),
    ("rdk:component:camera", {"capture_frequency_hz": 1},
     "service_configs[0].attributes.capture_methods[1].method", "is required"),
    ("rdk:component:camera", {"method": "GetImages", "capture_frequency_hz": 1, "additional_params": ["x"]},
     "service_configs[0].attributes.capture_methods[1].additional_params", "must be an object"),
    ("rdk:component:camera", {"method": "GetImages", "capture_frequency_hz": 1, "disabled": "no"},
     "service_configs[0].attributes.capture_methods[1].disabled", "true or false"),
])
def test_bad_capture_methods_name_resource_and_field(api: str, entry: dict[str, Any], field: str, text: str) -> None:
    good = {"method": "ReadImage" if api.endswith("camera") else "CaptureAllFromCamera", "capture_frequency_hz": 1,
            "additional_params": {"camera_name": "cam"}}
    with pytest.raises(ConfigError) as caught:
        CaptureMethod.from_service_configs("thing", api, capture(good, entry))
    assert (caught.value.resource, caught.value.field) == ("thing", field)
    assert text in str(caught.value)


def test_viam_server_configs_load(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """What viam-server accepts loads: its own keys we do not implement, unknown keys (warned), methods we skip."""
    monkeypatch.setenv("VIAM_HOME", str(tmp_path / "home"))
    caplog.set_level(logging.INFO)
    config = DataManagerConfig.parse("dm", {"sync_interval_mins": 0.5, "maximum_num_sync_threads": 2.0, "sync_ulr": "x"})
    assert config.capture_path == tmp_path / "home" / "capture" and config.sync_interval_s == 30
    assert config.maximum_capture_file_size_bytes == 262144 and config.sync_url == ""
    assert "did you mean 'sync_url'" in caplog.text and "maximum_num_sync_threads" in caplog.text
    assert DataManagerConfig.parse("dm", {}).sync_interval_s == 6  # viam-server's default of 0.1 min

    skipped = CaptureMethod.from_service_configs("cam", "rdk:component:camera", capture(
        {"method": "NextPointCloud", "capture_frequency_hz": 1}, {"method": "GetImages", "capture_frequency_hz": 0},
        {"method": "ReadImage", "capture_frequency_hz": 2, "disabled": True, "tags": ["ignored"]}))
    assert [(m.method, m.capture_frequency_hz, m.disabled) for m in skipped] == [("GetImages", 0, False),
                                                                                  ("ReadImage", 2, True)]
    assert CaptureMethod.from_service_configs("imu", "rdk:component:movement_sensor",
                                              capture({"method": "Readings", "capture_frequency_hz": 1})) == []
    with pytest.raises(ConfigError) as caught:
        DataManagerConfig.parse("dm", {"sync_interval_mins": -1})
    assert caught.value.field == "attributes.sync_interval_mins"
    with pytest.raises(ConfigError) as caught:
        DataManagerConfig.parse("dm", {"sync_url": "nosuchproto://bucket/x"})
    assert caught.value.field == "attributes.sync_url"


def test_periodic_sync_and_sync_now(tmp_path: Path) -> None:
    local, remote = tmp_path / "capture", tmp_path / "remote"
    folder = local / "rdk_component_camera" / "cam" / "GetImages"
    header = DataCaptureMetadata(component_type="rdk:component:camera", component_name="cam", method_name="GetImages")
    for i in range(3):
        write_capture(folder, header, [SensorData(binary=bytes([i]) * 100)])
    periodic = DataManagerConfig.parse("dm", {"capture_dir": str(local), "sync_url": str(remote),
                                              "sync_interval_mins": 0.0005})
    by_hand = DataManagerConfig.parse("dm", {"capture_dir": str(local), "sync_url": str(remote), "sync_disabled": True})

    async def run() -> None:
        manager = DataManager("dm", periodic, [], {})
        await manager.start()

        async def synced() -> None:
            assert manager.stats()["files_synced"] == 3

        await eventually(synced)
        await manager.close()
        write_capture(folder, header, [SensorData(binary=b"late")])
        manual = DataManager("dm", by_hand, [], {})
        await manual.start()
        assert (await manual.sync()).uploaded == 1 and manual.stats()["files_synced"] == 1
        await manual.close()
        with pytest.raises(ConfigError):
            await DataManager("dm", DataManagerConfig.parse("dm", {"capture_dir": str(local)}), [], {}).sync()

    asyncio.run(run())
    assert len(list(remote.rglob("*.capture"))) == 4 and not list(local.rglob("*.capture"))
