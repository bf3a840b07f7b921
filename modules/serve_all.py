"""Serve every model in modules/ from one process (the registry's entrypoint). Heavy libraries load only when a
resource that needs them is created, so a machine with just a camera never imports torch."""

import asyncio
import importlib.util
from pathlib import Path

from viam.module.module import Module

for main in sorted(Path(__file__).parent.glob("*/main.py")):
    spec = importlib.util.spec_from_file_location(f"labelsieve_module_{main.parent.name}", main)
    assert spec and spec.loader
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

if __name__ == "__main__":
    asyncio.run(Module.run_from_registry())
