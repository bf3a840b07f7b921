"""Live reload as pure functions: what an edit touches, what is checked first, and the steps once owners have answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labelsieve.errors import ConfigError
from labelsieve.runtime.config import MachineConfig, parse_config
from labelsieve.runtime.process import Dependencies
from labelsieve.runtime.reload import Running, plan, settle


@pytest.fixture()
def exe(tmp_path: Path) -> str:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return str(script)


def machine(exe: str, *resources: dict[str, Any], modules: tuple[str, ...] = ("cams", "vision")) -> MachineConfig:
    raw = {"modules": [{"type": "local", "name": m, "executable_path": exe} for m in modules],
           "components": [r for r in resources if r["api"].split(":")[1] == "component"],
           "services": [r for r in resources if r["api"].split(":")[1] == "service"]}
    return parse_config(raw, Path("/tmp/machine.json"))


def cam(name: str, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:component:camera", "model": "x:camera:media", "attributes": attributes}


def vision(name: str, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "api": "rdk:service:vision", "model": "x:vision:probe", "attributes": attributes}


def owner(resource: Any) -> str:
    return "cams" if resource.api.endswith("camera") else "vision"


def running(config: MachineConfig, deps: dict[str, Dependencies], failed: frozenset[str] = frozenset(),
            alive: frozenset[str] = frozenset({"cams", "vision"})) -> Running:
    return Running(alive, {r.name: owner(r) for r in config.resources}, failed, deps)


DEPS = {"cam": Dependencies(), "probe": Dependencies(("cam",))}


def test_an_attribute_edit_reconfigures_the_resource_then_its_dependents(exe: str) -> None:
    old = machine(exe, cam("cam"), cam("other"), vision("probe", camera_name="cam"))
    new = machine(exe, cam("cam", fps=2), cam("other"), vision("probe", camera_name="cam"))
    now = running(old, {**DEPS, "other": Dependencies()})
    p = plan(old, new, now, owner)
    assert p.changed == {"cam"} and not p.fresh and not p.stop_modules
    assert [r.name for r in p.check_first] == ["cam"] and not p.check_later
    settled = settle(p, now, {"cam": Dependencies()}, {})
    assert [(step, r.name) for step, r in settled.steps] == [("reconfigure", "cam"), ("reconfigure", "probe")]


def test_removing_what_a_kept_resource_needs_changes_nothing(exe: str) -> None:
    old = machine(exe, cam("cam"), vision("probe", camera_name="cam"))
    new = machine(exe, vision("probe", camera_name="cam"))
    with pytest.raises(ConfigError, match="resource 'probe': 'attributes' needs 'cam', which this edit removes"):
        plan(old, new, running(old, DEPS), owner)


def test_an_edited_module_restarts_and_its_resources_are_added_again_after_it(exe: str) -> None:
    old = machine(exe, cam("cam"), vision("probe", camera_name="cam"))
    new = parse_config({**_raw(old, exe), "modules": [{"type": "local", "name": "cams", "executable_path": exe,
                                                          "env": {"X": "1"}},
                                                         {"type": "local", "name": "vision", "executable_path": exe}]},
                       Path("/tmp/machine.json"))
    now = running(old, DEPS)
    p = plan(old, new, now, owner)
    assert p.stop_modules == {"cams"} and [m.name for m in p.start_modules] == ["cams"]
    assert p.fresh == {"cam"} and [r.name for r in p.check_later] == ["cam"] and not p.check_first
    settled = settle(p, now, {"cam": Dependencies()}, {})
    assert [(step, r.name) for step, r in settled.steps] == [("add", "cam"), ("reconfigure", "probe")]


def test_a_rejected_edit_keeps_the_previous_config_and_the_rest_applies(exe: str) -> None:
    old = machine(exe, cam("cam"), vision("probe", camera_name="cam"))
    new = machine(exe, cam("cam", fps="fast"), vision("probe", camera_name="cam"), cam("cam2"))
    now = running(old, DEPS)
    p = plan(old, new, now, owner)
    rejected = ConfigError("resource 'cam'", "attributes.fps", "must be a number")
    settled = settle(p, now, {"cam2": Dependencies()}, {"cam": rejected})
    assert settled.config.resource("cam").attributes == {} and "cam" in settled.kept and not settled.failed
    assert [(step, r.name) for step, r in settled.steps] == [("add", "cam2")]


def test_a_new_resource_that_is_rejected_fails_and_is_retried_by_the_next_edit(exe: str) -> None:
    old = machine(exe, cam("cam"))
    new = machine(exe, cam("cam"), cam("cam2", fps="fast"))
    now = running(old, {"cam": Dependencies()})
    settled = settle(plan(old, new, now, owner), now, {}, {"cam2": ConfigError("resource 'cam2'", "x", "bad")})
    assert "cam2" in settled.failed and not settled.steps
    retry = plan(new, new, running(new, {"cam": Dependencies()}, failed=frozenset({"cam2"})), owner)
    assert retry.fresh == {"cam2"}


def test_an_optional_dependency_that_appears_reconfigures_its_dependent(exe: str) -> None:
    old = machine(exe, vision("probe"))
    new = machine(exe, vision("probe"), cam("cam"))
    deps = {"probe": Dependencies(optional=("cam",))}
    now = running(old, deps)
    settled = settle(plan(old, new, now, owner), now, {"cam": Dependencies()}, {})
    assert [(step, r.name) for step, r in settled.steps] == [("add", "cam"), ("reconfigure", "probe")]


def _raw(config: MachineConfig, exe: str) -> dict[str, Any]:
    def resource(r: Any) -> dict[str, Any]:
        return {"name": r.name, "api": r.api, "model": r.model, "attributes": dict(r.attributes)}
    return {"components": [resource(r) for r in config.resources if ":component:" in r.api],
            "services": [resource(r) for r in config.resources if ":service:" in r.api]}


def test_starting_is_the_edit_from_an_empty_machine_and_dependents_of_a_failure_do_not_start(exe: str) -> None:
    """A resource its owner rejects does not start, and neither does what needs it, directly or through another:
    each failure names what it needs; the rest starts, in dependency order."""
    new = machine(exe, cam("cam"), cam("bad"), vision("probe", camera_name="bad"),
                  {**vision("late"), "depends_on": ["probe"]}, vision("fine", camera_name="cam"))
    empty = machine(exe, modules=())
    now = Running(frozenset(), {}, frozenset(), {})
    p = plan(empty, new, now, owner)
    assert {m.name for m in p.start_modules} == {"cams", "vision"} and p.fresh == {r.name for r in new.resources}
    checked = {"cam": Dependencies(), "probe": Dependencies(("bad",)), "late": Dependencies(),
               "fine": Dependencies(("cam",))}
    settled = settle(p, now, checked, {"bad": ConfigError("resource 'bad'", "attributes.source", "does not exist")})
    assert [(step, r.name) for step, r in settled.steps] == [("add", "cam"), ("add", "fine")]
    assert set(settled.failed) == {"bad", "probe", "late"} and not settled.kept
    assert "needs 'bad', which is not running" in str(settled.failed["probe"])
    assert "'depends_on' needs 'probe'" in str(settled.failed["late"])
