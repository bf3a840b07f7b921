"""One exception tree for labelsieve.

Callers catch at the depth they care about; the Viam glue maps each branch to one gRPC status at one seam
(`labelsieve.viam.errors`), so a stage never imports grpclib.

    LabelsieveError              (not raised itself)                   -> INTERNAL
    ├── ConfigError              bad attributes or machine config      -> INVALID_ARGUMENT
    │   ├── InvalidMachineConfig several ConfigErrors found in one pass -> INVALID_ARGUMENT
    │   └── FieldProblem         one field, from `Attributes.check`; `parse` names the resource -> INVALID_ARGUMENT
    ├── InputError               corrupt image, bad request argument   -> INVALID_ARGUMENT
    │   └── CorruptCaptureError  a truncated or foreign `.capture` file -> INVALID_ARGUMENT
    ├── UnsupportedError         a method this resource does not offer -> UNIMPLEMENTED
    ├── SourceExhausted          a non-looping source has no more frames -> OUT_OF_RANGE
    ├── ModelError               a model could not be loaded or run    -> FAILED_PRECONDITION
    │   ├── WeightsNotFoundError weights neither cached nor local      -> FAILED_PRECONDITION
    │   └── PromotionRefused     a candidate model is not better than the deployed one -> FAILED_PRECONDITION
    ├── BackendError             a remote service failed                -> UNAVAILABLE
    │   ├── BackendUnavailable   unreachable, refused, 5xx after retries -> UNAVAILABLE
    │   └── BackendTimeout       no answer in time                       -> DEADLINE_EXCEEDED
    ├── ModuleError              a module process failed to start or answer -> UNAVAILABLE
    └── SyncBusy                 another process is syncing this capture folder -> ABORTED
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigError",
    "CorruptCaptureError",
    "FieldProblem",
    "InputError",
    "InvalidMachineConfig",
    "LabelsieveError",
    "ModelError",
    "ModuleError",
    "PromotionRefused",
    "SourceExhausted",
    "SyncBusy",
    "UnsupportedError",
    "WeightsNotFoundError",
]


class LabelsieveError(Exception):
    """Root of every error labelsieve raises on purpose."""


class ConfigError(LabelsieveError):
    """A configuration value is wrong; the message names the resource, the field and the fix."""

    def __init__(self, resource: str, field: str, problem: str, fix: str = "") -> None:
        self.resource, self.field, self.problem, self.fix = resource, field, problem, fix
        where = f"{resource}: " if resource else ""
        at = f"'{field}' " if field else ""
        super().__init__(f"{where}{at}{problem}" + (f" ({fix})" if fix else ""))


class InvalidMachineConfig(ConfigError):
    """Every problem found while validating a machine config, so a user fixes them in one round."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("", "", "\n".join(f"- {e}" for e in errors))


class FieldProblem(ConfigError):
    """Raised by `Attributes.check` for one field; `Attributes.parse` raises it again as a `ConfigError` naming the
    resource."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        super().__init__("", field, problem, fix)


class InputError(LabelsieveError):
    """The request carried something unusable (a corrupt image, a wrong argument)."""


class CorruptCaptureError(InputError):
    """A capture file that is truncated or not Viam's format; readers report it and go on with the next file."""


class UnsupportedError(LabelsieveError):
    """The resource does not implement this method; the message says what to call instead."""


class SourceExhausted(LabelsieveError):
    """A media source that does not loop has played its last frame."""


class ModelError(LabelsieveError):
    """A model failed to load or to run."""


class WeightsNotFoundError(ModelError):
    """Weights are neither in the cache nor at a local path, and could not be downloaded."""


class PromotionRefused(ModelError):
    """The candidate has other classes than the deployed model, or scores worse; `force` deploys it anyway."""


class BackendError(LabelsieveError):
    """A remote model service failed."""


class BackendUnavailable(BackendError):
    """The service could not be reached or kept failing after retries."""


class BackendTimeout(BackendError):
    """The service did not answer within the configured timeout."""


class ModuleError(LabelsieveError):
    """A module process failed to start, to become ready or to answer the runtime."""


class SyncBusy(LabelsieveError):
    """Another process is syncing this capture folder."""
