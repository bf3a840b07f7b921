"""The one seam where labelsieve errors become gRPC statuses, so clients see a clear code instead of UNKNOWN."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from grpclib import GRPCError, Status
from viam.errors import ViamGRPCError

from labelsieve.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    InputError,
    LabelsieveError,
    ModelError,
    ModuleError,
    SourceExhausted,
    UnsupportedError,
)

__all__ = ["grpc_errors", "grpc_status"]

#: Most specific first: the first row an error is an instance of decides (the tree in `labelsieve.errors`).
_STATUS: tuple[tuple[type[LabelsieveError], Status], ...] = (
    (ConfigError, Status.INVALID_ARGUMENT),
    (InputError, Status.INVALID_ARGUMENT),
    (UnsupportedError, Status.UNIMPLEMENTED),
    (SourceExhausted, Status.OUT_OF_RANGE),
    (ModelError, Status.FAILED_PRECONDITION),
    (BackendTimeout, Status.DEADLINE_EXCEEDED),
    (BackendError, Status.UNAVAILABLE),
    (ModuleError, Status.UNAVAILABLE),
)


def grpc_status(exc: LabelsieveError) -> Status:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), Status.INTERNAL)


P = ParamSpec("P")
T = TypeVar("T")


def grpc_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate a resource method: labelsieve errors -> their status, anything unexpected -> INTERNAL with a logged
    traceback. gRPC errors pass untouched, viam-sdk's own too (`NoCaptureToStoreError`: viam-server matches its status
    and message to drop a frame)."""
    log = logging.getLogger(method.__module__)

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (GRPCError, ViamGRPCError):
            raise
        except LabelsieveError as exc:  # the end of a non-looping source is expected, not a warning
            log.log(logging.DEBUG if isinstance(exc, SourceExhausted) else logging.WARNING, "%s: %s",
                    method.__qualname__, exc)
            raise GRPCError(grpc_status(exc), str(exc)) from exc
        except Exception as exc:
            log.exception("%s failed unexpectedly", method.__qualname__)
            raise GRPCError(Status.INTERNAL, f"{method.__qualname__} failed: {type(exc).__name__}: {exc}") from exc

    wrapper.__labelsieve_grpc_errors__ = True  # type: ignore[attr-defined]
    return wrapper
