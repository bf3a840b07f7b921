"""Test session settings: nothing may reach the network; every model is built here, tiny, from a config."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


@pytest.fixture(scope="session")
def gdino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Grounding DINO saved like a user's local snapshot (model + processor in one folder)."""
    from labelsieve.demo.tiny_models import build_grounding_dino

    return build_grounding_dino(tmp_path_factory.mktemp("grounding-dino"))


@pytest.fixture(scope="session")
def owlv2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labelsieve.demo.tiny_models import build_owlv2

    return build_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained model directory for the whole session (read-only: copy it before changing anything)."""
    from support.scenes import train_tiny

    root = tmp_path_factory.mktemp("trained")
    env = {"LABELSIEVE_HOME": str(root / "home"), "YOLO_CONFIG_DIR": "", "YOLO_OFFLINE": ""}  # train sets them
    return train_tiny(root, env)[0]
