"""Memory stays flat over many captures: the data manager capturing through a viam-sdk camera client over grpclib (as in
the runtime) allocates nothing per capture that lives on. h2 remembered every closed stream (65,536 per connection) until
the runtime's connections were made with `labelsieve.viam.h2`."""

from __future__ import annotations

import asyncio
import gc
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from support.cameras import SerialCamera, get_images_method
from viam.components.camera import Camera
from viam.components.camera.client import CameraClient
from viam.resource.manager import ResourceManager
from viam.resource.registry import Registry

from labelsieve.capture.manager import DataManager, DataManagerConfig
from labelsieve.viam.h2 import CLOSED_STREAMS_KEPT, BoundedChannel, BoundedServer

KEY = "rdk:component:camera/cam/GetImages"


class ServedCamera(Camera):
    """A camera resource served by viam-sdk's own RPC service, answering with SerialCamera's frames."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frames = SerialCamera(padding=100)

    async def get_images(self, *args: Any, **kwargs: Any) -> Any:
        return await self.frames.get_images(**kwargs)

    async def get_point_cloud(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get_properties(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def growth_per_capture(tmp_path: Path, capture_dir: Path, warm: int, measured: int) -> float:
    """Memory blocks allocated after `warm` captures and still alive `measured` captures later, per capture."""
    async def run() -> float:
        server = BoundedServer([Registry.lookup_api(Camera.API).rpc_service(manager=ResourceManager([ServedCamera("cam")]))])
        await server.start(path=str(tmp_path / "cam.sock"))
        channel = BoundedChannel(path=str(tmp_path / "cam.sock"))
        config = DataManagerConfig.parse("dm", {"capture_dir": str(capture_dir)})
        manager = DataManager("dm", config, [get_images_method(1000)], {"cam": CameraClient("cam", channel)})

        async def captured(count: int) -> int:
            while (done := manager.stats()["methods"][KEY]["captured"]) < count:
                await asyncio.sleep(0.05)  # polls a counter; the amount asserted is memory, not time
            return int(done)

        tracemalloc.start()  # before the warm-up, so what a bounded structure evicts later was followed too
        try:
            await manager.start()
            first = await captured(warm)
            gc.collect()
            before = tracemalloc.take_snapshot()
            last = await captured(first + measured)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            await manager.close()
            channel.close()
            server.close()
            await server.wait_closed()
        # blocks, not bytes: a bounded dict with churn resizes its table now and then, a leak adds blocks
        grew = sum(s.count_diff for s in after.compare_to(before, "filename"))
        return grew / (last - first)

    try:
        return asyncio.run(run())
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_captures(tmp_path: Path) -> None:
    shm = Path("/dev/shm")  # thousands of fsyncs: in memory where there is such a folder
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path) as capture_dir:
        per_capture = growth_per_capture(tmp_path, Path(capture_dir), warm=CLOSED_STREAMS_KEPT + 100, measured=1500)
    # bounded churn (cancelled timers waiting for the loop's cleanup, lock waiters) moves a few hundred blocks either way
    assert per_capture < 0.5, f"{per_capture:.2f} memory blocks a capture stay allocated (h2 kept 4 on these 2 connections)"
