"""What tests (and `bench/`, which puts `tests/` on its path) share: a machine under test (`labelsieve run` as a real
subprocess, the official SDK client against it), encoded test images, stand-in servers and tiny model builders."""

from support.fake_openai import FakeOpenAI
from support.machine import (
    MODULES,
    ROOT,
    TEST_MODULES,
    Machine,
    camera,
    connect,
    eventually,
    machine_status,
    module,
    validate,
)
from support.media import bomb_png, encode, frames_folder, noise, solid

__all__ = [
    "MODULES",
    "ROOT",
    "TEST_MODULES",
    "FakeOpenAI",
    "Machine",
    "bomb_png",
    "camera",
    "connect",
    "encode",
    "eventually",
    "frames_folder",
    "machine_status",
    "module",
    "noise",
    "solid",
    "validate",
]
