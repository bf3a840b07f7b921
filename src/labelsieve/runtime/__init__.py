"""The embedded runtime: reads a viam-server machine config, runs each module as a process over the real module protocol,
routes calls between them and serves the robot API to any Viam SDK client.

    config.py      the machine config: parse and static validation
    process.py     one module process and the module protocol spoken to it
    server.py      the parent's gRPC surface: robot API, forwarder, API-key auth
    supervisor.py  lifecycle: start, restart, live reload, shutdown
"""

from labelsieve.runtime.config import MachineConfig, load_config
from labelsieve.runtime.supervisor import RuntimeOptions, Supervisor

__all__ = ["MachineConfig", "RuntimeOptions", "Supervisor", "load_config"]
