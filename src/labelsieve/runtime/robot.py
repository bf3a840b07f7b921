"""The robot API (`viam.robot.v1.RobotService`) every module and SDK client talks to: resource names, machine status,
StopAll, and the Log sink through which a module's records reach the runtime's log at their own level."""

from __future__ import annotations

import logging
from typing import Any

from grpclib.server import Stream
from viam.gen.robot.v1.robot_grpc import UnimplementedRobotServiceBase
from viam.proto.robot import (
    GetMachineStatusResponse,
    GetVersionResponse,
    LogResponse,
    ResourceNamesResponse,
    StopAllResponse,
)

from labelsieve import __version__
from labelsieve.runtime.routing import Forwarder, Routes

__all__ = ["RobotService"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL, "dpanic": logging.CRITICAL}


class RobotService(UnimplementedRobotServiceBase):
    """Serves one listener: a module's parent socket (`module` set: its Log lands under its name) or the clients'."""

    def __init__(self, routes: Routes, forwarder: Forwarder, module: str | None = None) -> None:
        self._routes, self._forwarder = routes, forwarder
        self._log = logging.getLogger(f"labelsieve.module.{module}" if module else "labelsieve.client")

    async def ResourceNames(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(ResourceNamesResponse(resources=self._routes.names()))

    async def Log(self, stream: Stream[Any, Any]) -> None:
        request = await _request(stream)
        for entry in request.logs:
            level = _LEVELS.get(entry.level.lower(), logging.INFO)
            # The Python SDK always fills `stack` with "exc_info: None, ..."; only a real traceback is worth printing.
            stack = f"\n{entry.stack}" if entry.stack and "exc_text: None" not in entry.stack else ""
            self._log.log(level, "%s: %s%s", entry.logger_name, entry.message, stack)
        await stream.send_message(LogResponse())

    async def GetMachineStatus(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(GetMachineStatusResponse(resources=self._routes.statuses(),
                                                           state=GetMachineStatusResponse.State.STATE_RUNNING))

    async def StopAll(self, stream: Stream[Any, Any]) -> None:
        request = await _request(stream)
        extra = {(f"{p.name.namespace}:{p.name.type}:{p.name.subtype}", p.name.name): p.params for p in request.extra}
        await self._forwarder.stop_all(extra)
        await stream.send_message(StopAllResponse())

    async def GetVersion(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(GetVersionResponse(platform="labelsieve", version=__version__, api_version="0.85"))


async def _request(stream: Stream[Any, Any]) -> Any:
    """A unary method's request (a client that sends none is answered by grpclib itself)."""
    request = await stream.recv_message()
    assert request is not None
    return request
