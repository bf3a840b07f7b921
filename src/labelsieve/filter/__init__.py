"""The auto-label filter: keep a frame only where a box proposer and a crop verifier agree, and label it with the verified
boxes and their provenance.

    sieve = AutoLabelFilter(FilterConfig.parse("labeler", attributes), propose, verify)
    decision = await sieve.examine(Frame(image))
    decision.detections, decision.provenance   # verified, relabelled boxes and how each was labelled
"""

from labelsieve.filter.config import FilterConfig, Rule
from labelsieve.filter.core import AutoLabelFilter, Decision, FilterStats, Frame, Proposer, VerifyCrops
from labelsieve.filter.gate import DuplicateGate, thumbnail
from labelsieve.filter.provenance import Provenance

__all__ = ["AutoLabelFilter", "Decision", "DuplicateGate", "FilterConfig", "FilterStats", "Frame", "Proposer", "Provenance",
           "Rule", "VerifyCrops", "thumbnail"]
