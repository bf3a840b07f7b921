"""The auto-label filter: keep a frame only where a box proposer and a crop verifier agree, and label it with the verified
boxes and their provenance.

    sieve = AutoLabelFilter(FilterConfig.parse("labeler", attributes), propose, verify)
    decision = await sieve.examine(Frame(image))
    decision.detections              # verified, relabelled boxes; .provenance says how each was labelled
    decision.trace                   # every proposed box under every rule: asked or why not, verdict, label
"""

from labelsieve.filter.config import FilterConfig, Rule
from labelsieve.filter.core import (
    AutoLabelFilter,
    BoxTrace,
    Decision,
    FilterStats,
    Frame,
    Proposer,
    VerifyCrops,
    read_verdict,
)
from labelsieve.filter.gate import DuplicateGate, thumbnail
from labelsieve.filter.provenance import Provenance

__all__ = ["AutoLabelFilter", "BoxTrace", "Decision", "DuplicateGate", "FilterConfig", "FilterStats", "Frame", "Proposer",
           "Provenance", "Rule", "VerifyCrops", "read_verdict", "thumbnail"]
