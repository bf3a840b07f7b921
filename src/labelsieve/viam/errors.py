"""The one seam where labelsieve errors become gRPC statuses, so clients see a clear code instead of UNKNOWN. Modules'
resource methods pass through it with `grpc_errors`, the runtime's builtins too (and with `grpc_seam` where no method
wraps the call)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

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
    SyncBusy,
    UnsupportedError,
)

__all__ = ["grpc_errors", "grpc_seam", "grpc_status"]

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
    (SyncBusy, Status.ABORTED),
)


def grpc_status(exc: LabelsieveError) -> Status:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), Status.INTERNAL)


@contextlib.contextmanager
def grpc_seam(where: str, log: logging.Logger, level: int = logging.WARNING) -> Iterator[None]:
    """Whatever leaves this block leaves as what a gRPC caller should see: labelsieve errors -> their status (one log line
    at `level`; the end of a non-looping source, which is expected, at DEBUG), anything unexpected -> INTERNAL with a
    logged traceback. gRPC errors pass untouched, viam-sdk's own too (`NoCaptureToStoreError`: viam-server matches its
    status and message to drop a frame)."""
    try:
        yield
    except (GRPCError, ViamGRPCError):
        raise
    except LabelsieveError as exc:
        log.log(logging.DEBUG if isinstance(exc, SourceExhausted) else level, "%s: %s", where, exc)
        raise GRPCError(grpc_status(exc), str(exc)) from exc
    except Exception as exc:
        log.exception("%s failed unexpectedly", where)
        raise GRPCError(Status.INTERNAL, f"{where} failed: {type(exc).__name__}: {exc}") from exc


P = ParamSpec("P")
T = TypeVar("T")


def grpc_errors(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a resource method: every exception leaves it through `grpc_seam`."""
    log = logging.getLogger(method.__module__)

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with grpc_seam(method.__qualname__, log):
            return await method(*args, **kwargs)

    wrapper.__labelsieve_grpc_errors__ = True  # type: ignore[attr-defined]
    return wrapper
