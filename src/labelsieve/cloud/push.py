"""Labels out: a dataset version's verified boxes into Viam's app, every image into a named Viam dataset.

- An image that came from Viam (pulled through a `viam://` source or a `viam dataset export`, or pushed before) gets its
  boxes as bounding-box annotations on the same binary data, normalized, confidence = agreement; a box the datum already
  has (same label, same corners to 1e-4) is not added again, so pushing twice adds nothing.
- Any other image is uploaded as viam-server's sync uploads a capture (metadata from its capture file when that is still
  there, boxes in the upload's annotations, above 1 MB in 64 KiB chunks) and remembered, so a re-push finds it.
- No tags: `viam dataset export` turns every tag into a classification label.

An upload whose answer is lost (the process killed after sending) may be stored without being remembered; the next push
then uploads that image again. The app offers no idempotency key to close that window.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from viam.proto.app.data import BinaryData
from viam.proto.app.datasync import DataCaptureMetadata, DataType, SensorData, UploadMetadata

from labelsieve.capture.format import CorruptCaptureError, read_capture
from labelsieve.cloud.captures import Origin, image_key, lookup_origin, remember_origin
from labelsieve.cloud.jsonl import MIME_TYPES, VersionImage, version_images
from labelsieve.cloud.viam import Cloud, connect, parse_url
from labelsieve.dataset import DatasetVersion
from labelsieve.errors import InputError

__all__ = ["PushReport", "push"]

log = logging.getLogger(__name__)
_IDS_PER_CALL = 100


@dataclass
class PushReport:
    dataset_id: str = ""
    boxes_added: int = 0
    boxes_present: int = 0  # already on their binary data: not added again
    uploaded: int = 0  # images Viam did not have
    labeled: int = 0  # images Viam had
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"dataset {self.dataset_id}: {self.labeled + self.uploaded} images ({self.uploaded} uploaded), "
                f"{self.boxes_added} boxes added, {self.boxes_present} already there")
        return text + (f", {len(self.failed)} failed (first: {self.failed[0]})" if self.failed else "")


def _key(label: str, xyxy: tuple[float, ...]) -> tuple[str, tuple[int, ...]]:
    return label, tuple(round(v * 1e4) for v in xyxy)


def _capture_header(image: VersionImage) -> DataCaptureMetadata | None:
    """The header of the capture file the image came from, when that file is still on this disk."""
    for row in image.rows:
        path = Path(str(row.get("source", "")).rsplit("#", 1)[0])
        if path.is_file():
            try:
                return read_capture(path).header
            except (CorruptCaptureError, OSError):
                return None
    return None


async def _upload(cloud: Cloud, image: VersionImage, data: bytes, part: str, dataset_id: str) -> str:
    header = await asyncio.to_thread(_capture_header, image)
    mime = MIME_TYPES.get(image.path.suffix.lower(), "")
    metadata = UploadMetadata(
        part_id=part, type=DataType.DATA_TYPE_BINARY_SENSOR, dataset_ids=[dataset_id], mime_type=mime,
        component_type=header.component_type if header else "rdk:component:camera",
        component_name=header.component_name if header else "labelsieve",
        method_name=header.method_name if header else "ReadImage",
        file_extension=".png" if mime == "image/png" else ".jpeg" if mime == "image/jpeg" else image.path.suffix)
    reading = SensorData(binary=data)
    if image.time is not None:
        reading.metadata.time_requested.FromNanoseconds(round(image.time * 1e9))
    reading.metadata.time_received.GetCurrentTime()
    for label, (x0, y0, x1, y1), confidence in image.boxes():
        box = reading.metadata.annotations.bboxes.add(label=label, x_min_normalized=x0, y_min_normalized=y0,
                                                     x_max_normalized=x1, y_max_normalized=y1)
        box.confidence = confidence
    return await cloud.upload(metadata, [reading])


async def _label(cloud: Cloud, items: list[tuple[VersionImage, Origin]], report: PushReport) -> list[str]:
    """Add each image's missing boxes to its binary data; returns the ids still in Viam."""
    kept = []
    for start in range(0, len(items), _IDS_PER_CALL):
        batch = items[start:start + _IDS_PER_CALL]
        found: list[BinaryData] = await cloud.call(cloud.data.binary_data_by_ids(
            [origin.binary_data_id for _, origin in batch], include_binary_data=False))
        present = {item.metadata.binary_data_id: {
            _key(b.label, (b.x_min_normalized, b.y_min_normalized, b.x_max_normalized, b.y_max_normalized))
            for b in item.metadata.annotations.bboxes} for item in found}
        for image, origin in batch:
            if origin.binary_data_id not in present:
                report.failed.append(f"{image.path.name}: binary data {origin.binary_data_id} is gone from Viam")
                continue
            for label, xyxy, confidence in image.boxes():
                if _key(label, xyxy) in present[origin.binary_data_id]:
                    report.boxes_present += 1
                    continue
                await cloud.call(cloud.data.add_bounding_box_to_image_by_id(
                    origin.binary_data_id, label, *xyxy, confidence_score=confidence))
                present[origin.binary_data_id].add(_key(label, xyxy))
                report.boxes_added += 1
            report.labeled += 1
            kept.append(origin.binary_data_id)
    return kept


async def _push(version: DatasetVersion, url: str, progress: bool) -> PushReport:
    target = parse_url(url, kinds=("dataset",))
    images = version_images(version)
    report = PushReport()
    async with connect() as cloud:
        report.dataset_id = await cloud.dataset_id(target.dataset, target.org, create=True)
        known: list[tuple[VersionImage, Origin]] = []
        for image in tqdm(images, desc=f"pushing {version.name}", unit="image", disable=not progress):
            data = await asyncio.to_thread(image.path.read_bytes)
            key = image_key(data)
            if (origin := lookup_origin(key)) is not None:
                known.append((image, origin))
                continue
            if not target.part:
                raise InputError(f"{image.path.name} is not in Viam yet, and uploading it needs a part id: add "
                                 "?part=<part id> to the URL or set VIAM_MACHINE_PART_ID")
            try:
                binary_id = await _upload(cloud, image, data, target.part, report.dataset_id)
            except InputError as exc:
                report.failed.append(f"{image.path.name}: {exc}")
                continue
            remember_origin(key, Origin(binary_id, target.org))
            report.uploaded += 1
            report.boxes_added += sum(1 for _ in image.boxes())
        ids = await _label(cloud, known, report)
        for start in range(0, len(ids), _IDS_PER_CALL):
            await cloud.call(cloud.data.add_binary_data_to_dataset_by_ids(ids[start:start + _IDS_PER_CALL],
                                                                          report.dataset_id))
    return report


def push(version: DatasetVersion, url: str, *, progress: bool = True) -> PushReport:
    """Push `version`'s verified boxes and images to the Viam dataset `url` names (`viam://dataset/<name or id>`),
    creating a named dataset that does not exist yet."""
    return asyncio.run(_push(version, url, progress))
