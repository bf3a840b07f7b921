"""Live reload as pure functions: `plan(old, new, running)` says what an edit changes, `settle(...)` decides, once the
owners have validated the edited resources, what is applied and in what order. The runtime only executes the steps.

Rules (what a user sees):
- only what changed is touched, plus what depends on it, plus retries of what failed before;
- an edit is checked before anything changes: a syntax error, or an edit that leaves a resource that is kept as it is
  without a dependency it needs, changes nothing;
- past that, every valid part applies; a resource whose edit its owner rejects keeps its previous config where it can
  (it is running and its module stays), else it is reported as failed and retried on the next edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from labelsieve.errors import ConfigError
from labelsieve.runtime.config import MachineConfig, ModuleConfig, ResourceConfig, dependency_order
from labelsieve.runtime.process import Dependencies
from labelsieve.runtime.resources import present

__all__ = ["Plan", "Running", "Settled", "plan", "settle"]


@dataclass(frozen=True)
class Running:
    """What runs now, as far as planning needs to know."""

    alive_modules: frozenset[str]
    owner_of: Mapping[str, str]  # resource -> owner name, for the resources of the old config
    failed: frozenset[str]  # resources that failed to start and are retried by any edit
    deps: Mapping[str, Dependencies]  # validated dependencies of the running resources


@dataclass(frozen=True)
class Plan:
    old: MachineConfig
    new: MachineConfig
    stop_modules: frozenset[str]
    start_modules: tuple[ModuleConfig, ...]
    leaving: frozenset[str]  # taken out of where they run: removed, or moved to another API or model
    fresh: frozenset[str]  # added anew: new, moved, failed before, or on a module that restarts
    changed: frozenset[str]  # new or edited: their owner validates them
    check_first: tuple[ResourceConfig, ...]  # changed or fresh on owners that keep running: validated before any change
    check_later: tuple[ResourceConfig, ...]  # the rest: validated once their (re)started module is up
    owner_of: Mapping[str, str]  # as in `Running`

    def keepable(self, name: str) -> bool:
        """An invalid edit of this resource can fall back to what runs now."""
        return any(r.name == name for r in self.old.resources) and name not in self.leaving and \
            self.owner_of.get(name) not in self.stop_modules


def plan(old: MachineConfig, new: MachineConfig, running: Running, owner: Callable[[ResourceConfig], str | None]) -> Plan:
    """What the edit from `old` to `new` changes. `owner(resource)` names the owner now serving a resource's model.
    Raises ConfigError, changing nothing, when a resource kept as it is would lose a required dependency."""
    old_mods, new_mods = {m.name: m for m in old.modules}, {m.name: m for m in new.modules}
    old_res, new_res = {r.name: r for r in old.resources}, {r.name: r for r in new.resources}
    dead = {n for n in new_mods if n not in running.alive_modules}
    stopping = frozenset(n for n in old_mods if old_mods[n] != new_mods.get(n) or n in dead)
    leaving = frozenset(n for n in old_res if n not in new_res or
                        (old_res[n].api, old_res[n].model) != (new_res[n].api, new_res[n].model))
    fresh = frozenset(n for n in new_res if n not in old_res or n in leaving or n in running.failed
                      or running.owner_of.get(n) in stopping)
    changed = frozenset(n for n in new_res if n not in old_res or new_res[n] != old_res[n])
    for name in sorted(set(new_res) - changed):
        if missing := [d for d in running.deps.get(name, Dependencies()).required if d not in new_res]:
            raise ConfigError(f"resource '{name}'", "attributes", f"needs '{missing[0]}', which this edit removes",
                              "keep that resource or change this one too")
    touched = [new_res[n] for n in sorted(changed | fresh)]
    first = tuple(r for r in touched if (o := owner(r)) is not None and o not in stopping)
    return Plan(old, new, stopping, tuple(m for n, m in new_mods.items() if n not in old_mods or n in stopping),
                leaving, fresh, changed, first, tuple(r for r in touched if r not in first), running.owner_of)


def _fail_dependents(config: MachineConfig, required: Mapping[str, tuple[str, ...]], failed: dict[str, ConfigError],
                     kept: dict[str, ConfigError]) -> None:
    """What needs a resource that will not run does not run either, saying which (as viam-server: its dependents wait
    for it until an edit brings it up)."""
    while grown := [(r, dep) for r in config.resources if r.name not in failed
                    for dep in sorted({*r.depends_on, *required.get(r.name, ())} & failed.keys())[:1]]:
        for r, dep in grown:
            kept.pop(r.name, None)
            failed[r.name] = ConfigError(f"resource '{r.name}'", "depends_on" if dep in r.depends_on else "attributes",
                                         f"needs '{dep}', which is not running", f"see the error of '{dep}'")


@dataclass(frozen=True)
class Settled:
    config: MachineConfig  # what runs after the edit: the new config, with rejected edits replaced by the old ones
    deps: dict[str, Dependencies]
    steps: tuple[tuple[str, ResourceConfig], ...]  # ("add" | "reconfigure", resource), in dependency order
    failed: dict[str, ConfigError]  # resources that will not run, with why
    kept: dict[str, ConfigError]  # resources that keep their previous config, with why


def settle(p: Plan, running: Running, checked: Mapping[str, Dependencies], errors: Mapping[str, ConfigError]) -> Settled:
    """Given the owners' verdicts on the edited resources, what runs and the steps to get there (raises ConfigError on a
    dependency cycle, before anything changes when called on the first verdicts)."""
    old_res = {r.name: r for r in p.old.resources}
    kept = {n: e for n, e in errors.items() if p.keepable(n)}
    failed = {n: e for n, e in errors.items() if n not in kept}
    _fail_dependents(p.new, {n: d.required for n, d in {**running.deps, **checked}.items()}, failed, kept)
    resources = tuple(old_res[r.name] if r.name in kept else r for r in p.new.resources if r.name not in failed)
    config = replace(p.new, resources=resources)
    names = {r.name for r in resources}
    deps = {n: d for n, d in {**running.deps, **checked}.items() if n in names}
    deps.update({n: running.deps.get(n, Dependencies()) for n in kept})
    implicit = present(deps, names)
    order = dependency_order(config, implicit)
    fresh = set(p.fresh) - set(errors)
    dirty = (set(p.changed) | fresh) - set(errors)
    previous = present(running.deps, {r.name for r in p.old.resources})
    for r in order:  # an optional dependency that appeared or went counts as a change of the resource
        if r.name in old_res and set(implicit.get(r.name, ())) != set(previous.get(r.name, ())):
            dirty.add(r.name)
    for r in order:  # dependents of anything touched are reconfigured after it
        if (set(r.depends_on) | set(implicit.get(r.name, ()))) & dirty:
            dirty.add(r.name)
    steps = tuple(("add" if r.name in fresh else "reconfigure", r) for r in order if r.name in fresh | dirty)
    return Settled(config, deps, steps, failed, kept)
