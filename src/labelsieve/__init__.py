"""labelsieve: train fast vision models with slow multimodal AI.

The package holds the logic; `modules/` (Viam module processes), `labelsieve.runtime` (the embedded machine) and
`labelsieve.cli` are thin shells over it. The core (detections, attributes, stages) never imports viam or torch at import time.
"""

from labelsieve.detections import Detections
from labelsieve.errors import ConfigError, LabelsieveError

__all__ = ["ConfigError", "Detections", "LabelsieveError"]
__version__ = "0.1.0"
