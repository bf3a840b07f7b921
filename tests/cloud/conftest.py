"""Every cloud test talks to a fresh local stand-in of Viam's app, found through the environment as the CLI finds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.viam_app import ViamApp, viam_app


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ViamApp]:
    with viam_app() as stand_in:
        for key, value in {**stand_in.env(), "LABELSIEVE_HOME": str(tmp_path / "home")}.items():
            monkeypatch.setenv(key, value)
        yield stand_in
