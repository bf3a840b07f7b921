"""The embedded runtime: reads a viam-server machine config, runs each module as a process over the real module protocol,
hosts viam-server's builtin services itself, routes calls between them all and serves the robot API to any Viam SDK client.

    config.py      the machine config: parse and static validation
    server.py      Server: runs a Runtime under signals (first stops, second kills)
    machine.py     Runtime: composes the pieces below; start, run, shutdown, live reload
    modules.py     the module pool: processes, parent sockets, restart policy
    process.py     one module process and the module protocol spoken to it
    reaper.py      the process that ends modules' process groups if the runtime dies
    builtins/      builtin resources hosted in the runtime process (data manager, fakes)
    resources.py   which owner serves what; validate, add, reconfigure, remove
    reload.py      live reload as a pure plan (old config, new config -> steps)
    routing.py     routes and the forwarder that passes calls to a resource's owner
    robot.py       the robot API (resource names, status, StopAll, Log)
    listener.py    the client listener: API-key auth, TLS, request size limit
"""

from labelsieve.runtime.config import MachineConfig, load_config
from labelsieve.runtime.machine import Runtime, RuntimeOptions
from labelsieve.runtime.server import Server

__all__ = ["MachineConfig", "Runtime", "RuntimeOptions", "Server", "load_config"]
