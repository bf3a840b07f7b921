"""Stage 2: ask a VLM whether a crop really shows what a label claims, answering yes / no / unsure.

    verifier = Verifier(VerifierConfig.parse("vlm", {"backend": "openai", "base_url": ..., "model": ...}))
    verdicts = await verifier.verify(crops, "Is this person wearing glasses on their face?")
"""

from labelsieve.verify.answers import Answer, Verdict, parse_answer
from labelsieve.verify.config import VerifierConfig
from labelsieve.verify.verifier import Backend, Verifier, make_backend

__all__ = ["Answer", "Backend", "Verdict", "Verifier", "VerifierConfig", "make_backend", "parse_answer"]
