"""The near-duplicate gate: skip a frame that looks like the last one examined, before any model runs.

The measure is the mean absolute difference of two 32x32 grayscale thumbnails, in units of full brightness (0 = the
same picture, 1 = black against white). Box-averaging 300 pixels into each thumbnail cell flattens sensor noise and JPEG
artefacts, costs about a millisecond for a VGA frame, and leaves any change over a few percent of the frame visible.
The reference is the last frame *examined*, not the last frame seen, so a slow drift (the sun moving) adds up until it
crosses the threshold and the frame is looked at again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["DuplicateGate", "thumbnail"]

SIDE = 32


def thumbnail(image: Image.Image) -> npt.NDArray[np.float32]:
    small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(small, np.float32) / 255.0


class DuplicateGate:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._reference: npt.NDArray[np.float32] | None = None

    def difference(self, thumb: npt.NDArray[np.float32]) -> float | None:
        """How far `thumb` is from the last frame examined; None before the first one."""
        return None if self._reference is None else float(np.abs(thumb - self._reference).mean())

    def is_duplicate(self, difference: float | None) -> bool:
        return self.threshold > 0 and difference is not None and difference < self.threshold

    def examined(self, thumb: npt.NDArray[np.float32]) -> None:
        self._reference = thumb
