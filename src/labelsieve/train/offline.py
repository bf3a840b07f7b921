"""Make ultralytics safe offline. Call before the first `import ultralytics` (its settings are read on import).

Left alone, ultralytics reaches the network on its own: it downloads Arial.ttf for every dataset check (even with
`plots=False`), a model for the AMP check on a GPU, and pip-installs missing packages. On a robot or an air-gapped
trainer each of those hangs or fails, so labelsieve gives it a config dir of its own with a font already in place.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from labelsieve.paths import module_data

__all__ = ["default_config_dir", "ultralytics_offline", "yolo_class"]

log = logging.getLogger(__name__)


def default_config_dir() -> Path:
    """Inside a module its own data folder; elsewhere `$LABELSIEVE_HOME` (default ~/.labelsieve)."""
    return module_data() / "ultralytics"


def _bundled_font() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")  # an ultralytics dependency that ships DejaVu fonts
    for root in (spec.submodule_search_locations or []) if spec else []:
        font = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    return None


def ultralytics_offline(config_dir: Path | None = None) -> Path:
    """Point ultralytics at `config_dir` (default `default_config_dir()`), forbid downloads and installs, seed the font."""
    config_dir = config_dir or default_config_dir()
    if "ultralytics" in sys.modules and os.environ.get("YOLO_CONFIG_DIR") != str(config_dir):
        log.warning("ultralytics was imported before labelsieve set it offline; it may try to download fonts")
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(config_dir))
    fonts = config_dir / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    font = _bundled_font()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if font and not (fonts / name).exists():
            shutil.copyfile(font, fonts / name)
    return config_dir


def yolo_class(config_dir: Path | None = None) -> Any:
    """`ultralytics.YOLO`, imported offline. Importing ultralytics also replaces PIL's `Image.open` for the whole process
    with one that tries to pip-install a HEIF plugin whenever an image is unreadable; PIL's own is put back, so a corrupt
    image stays an InputError (INVALID_ARGUMENT) for every stage in the process, and nothing reaches for the network."""
    ultralytics_offline(config_dir)
    from PIL import Image
    from ultralytics import YOLO
    from ultralytics.utils import patches

    Image.open = patches._image_open
    return YOLO
