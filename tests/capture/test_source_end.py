"""The expected end of a non-looping camera (OUT_OF_RANGE) stops its collector quietly: one INFO line, no ERROR, no
more calls."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from support import eventually
from support.cameras import SerialCamera, get_images_method

from labelsieve.capture.manager import DataManager, DataManagerConfig

KEY = "rdk:component:camera/cam/GetImages"


def test_the_end_of_the_frames_stops_capture_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    camera = SerialCamera(frames=5)

    async def run() -> dict[str, int | str]:
        config = DataManagerConfig.parse("dm", {"capture_dir": str(tmp_path)})
        manager = DataManager("dm", config, [get_images_method(50)], {"cam": camera})
        await manager.start()

        async def ended() -> None:
            assert manager.stats()["methods"][KEY]["ended"]
        await eventually(ended)
        await manager.close()
        return manager.stats()["methods"][KEY]  # type: ignore[no-any-return]

    stats = asyncio.run(run())
    assert stats["captured"] == 5 and stats["errors"] == 0 and "no more frames" in str(stats["ended"])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert sum("ended" in r.getMessage() for r in caplog.records) == 1
    assert camera.served == 5 and len(list(tmp_path.rglob("*.capture"))) == 5
