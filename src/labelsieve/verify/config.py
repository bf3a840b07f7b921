"""Attributes of a VLM verifier, shared by the Viam module, the Python API and (later) the CLI."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import ClassVar, Literal

from labelsieve.attributes import Attributes, FieldProblem
from labelsieve.errors import ConfigError

__all__ = ["VerifierConfig"]


@dataclasses.dataclass(frozen=True)
class VerifierConfig(Attributes):
    """How to ask a VLM a yes/no question about a crop.

    The unsure band: with `p_yes` the model's probability of "yes" against "no", the verdict is "yes" only when
    `p_yes >= yes_threshold`, "no" when `p_yes <= no_threshold`, and "unsure" in between. `yes_threshold` must exceed 0.5
    so a coin flip is never a label.
    """

    backend: Literal["openai", "transformers"] = "openai"
    #: Chat model name (openai) or Hugging Face hub id / local checkpoint directory (transformers).
    model: str = "HuggingFaceTB/SmolVLM-256M-Instruct"
    base_url: str = ""
    #: Name of the environment variable holding the API key; the key itself never appears in a config.
    api_key_env: str = ""
    timeout: float = 30.0
    max_concurrency: int = 4
    max_retries: int = 2
    #: Longest Retry-After / backoff sleep honoured, so a hostile header cannot park a request for an hour.
    max_backoff: float = 10.0
    #: Ask the endpoint for token log-probabilities (turned off automatically if it rejects them).
    logprobs: bool = True
    default_question: str = ""
    yes_threshold: float = 0.6
    no_threshold: float = 0.4
    #: Longest side of the crop sent (openai); encoder tile size for SmolVLM/Idefics3 (0 = the model's own).
    imgsz: int = 512
    #: As in the detectors: auto = a GPU when torch sees one; auto dtype = float16 on a GPU, float32 on a CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    cache_size: int = 4096
    revision: str = ""
    #: Optional camera for get_classifications_from_camera (a Viam dependency).
    camera_name: str = ""

    renamed: ClassVar[Mapping[str, str]] = {"image_size": "imgsz"}

    def check(self) -> None:
        if self.backend == "openai" and not self.base_url:
            raise FieldProblem("base_url", "is required for the openai backend",
                               'e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1"')
        if not self.model:
            raise FieldProblem("model", "must not be empty", "a chat model name, hub id or local directory")
        if self.timeout <= 0:
            raise FieldProblem("timeout", f"must be > 0 seconds, got {self.timeout}")
        if self.max_concurrency < 1:
            raise FieldProblem("max_concurrency", f"must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0 or self.max_backoff < 0 or self.cache_size < 0:
            raise FieldProblem("max_retries" if self.max_retries < 0 else "max_backoff" if self.max_backoff < 0
                               else "cache_size", "must be >= 0")
        if not 0.5 < self.yes_threshold <= 1:
            raise FieldProblem("yes_threshold", f"must be in (0.5, 1], got {self.yes_threshold}",
                               "above 0.5 so an even split is never 'yes'")
        if not 0 <= self.no_threshold < self.yes_threshold:
            raise FieldProblem("no_threshold", f"must be in [0, yes_threshold), got {self.no_threshold}")
        if self.imgsz < 0 or (self.imgsz and self.imgsz < 32):
            raise FieldProblem("imgsz", f"must be 0 or >= 32 pixels, got {self.imgsz}")

    def api_key(self, resource: str = "") -> str:
        """The key from the environment, read at call time so a rotated key needs no reconfigure."""
        if not self.api_key_env:
            return "none"  # local servers ignore it; the client refuses an empty key
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(resource, "attributes.api_key_env", f"names ${self.api_key_env}, which is not set",
                              f"export {self.api_key_env}=... in the module's environment (config 'env')")
        return key
