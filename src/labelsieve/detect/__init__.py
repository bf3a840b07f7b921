"""Stage 1 of auto-labeling: open-vocabulary box proposals for text classes (Grounding DINO, OWLv2).

Importing this package does not import torch; `GroundingDetector.load()` does.
"""

from labelsieve.detect.config import GroundingDetectorConfig, parse_query
from labelsieve.detect.grounding import SUPPORTED_MODEL_TYPES, GroundingDetector

__all__ = ["SUPPORTED_MODEL_TYPES", "GroundingDetector", "GroundingDetectorConfig", "parse_query"]
