"""The resource layer: which owner serves each resource, their validation and dependencies, and adding, reconfiguring
and removing them. Owners are module processes and the builtin host alike (`modules.Owner`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from grpclib import GRPCError

from labelsieve.attributes import did_you_mean
from labelsieve.errors import ConfigError, ModuleError
from labelsieve.runtime.config import MachineConfig, ResourceConfig, dependency_order
from labelsieve.runtime.modules import Owner
from labelsieve.runtime.process import Dependencies
from labelsieve.runtime.routing import Routes

__all__ = ["Resources", "present"]

log = logging.getLogger("labelsieve.runtime")


def present(deps: Mapping[str, Dependencies], names: set[str]) -> dict[str, list[str]]:
    """Each resource's effective dependencies: its required ones, plus the optional ones the config holds."""
    return {name: [*d.required, *(o for o in d.optional if o in names and o not in d.required)] for name, d in deps.items()}


class Resources:
    def __init__(self, routes: Routes, owners: Callable[[], Iterable[Owner]],
                 expand: Callable[[ResourceConfig, MachineConfig], ResourceConfig],
                 failed_modules: Mapping[str, str] | None = None) -> None:
        """`failed_modules`: why each module that did not start did not (a live mapping), named to what it may serve."""
        self.routes, self._owners, self._expand = routes, owners, expand
        self._failed_modules = failed_modules if failed_modules is not None else {}
        self.config: MachineConfig | None = None
        self.deps: dict[str, Dependencies] = {}

    def owner(self, resource: ResourceConfig) -> Owner | None:
        return next((o for o in self._owners() if resource.model in o.served.get(resource.api, ())), None)

    def owner_names(self, config: MachineConfig) -> dict[str, str]:
        return {r.name: o.name for r in config.resources if (o := self.owner(r))}

    def implicit(self) -> dict[str, list[str]]:
        assert self.config is not None
        return present(self.deps, {r.name for r in self.config.resources})

    def order(self) -> list[ResourceConfig]:
        assert self.config is not None
        return dependency_order(self.config, self.implicit())

    def of_owner(self, owner: str) -> list[ResourceConfig]:
        return [r for r in self.order() if (o := self.owner(r)) and o.name == owner]

    async def check(self, config: MachineConfig, resources: Iterable[ResourceConfig]
                    ) -> tuple[dict[str, Dependencies], dict[str, ConfigError]]:
        """Served-model check and each owner's ValidateConfig -> (dependencies, problems by resource name). Required
        dependencies must be in `config`; optional ones may be missing."""
        names = {r.name for r in config.resources}
        deps: dict[str, Dependencies] = {}
        errors: dict[str, ConfigError] = {}
        for resource in resources:
            where = f"resource '{resource.name}'"
            owner = self.owner(resource)
            if owner is None:
                served = sorted(f"{m} ({api})" for o in self._owners() for api, ms in o.served.items() for m in ms)
                models = {m for o in self._owners() for ms in o.served.values() for m in ms}
                fix = did_you_mean(resource.model, models) or (f"served here: {', '.join(served) or 'nothing'}; "
                                                                "add the module that provides it")
                if self._failed_modules:
                    fix = "; ".join(f"module '{n}' did not start: {e}" for n, e in self._failed_modules.items())
                errors[resource.name] = ConfigError(where, "model", f"no module serves {resource.model} for {resource.api}",
                                                    fix)
                continue
            try:
                found = await owner.validate(self._expand(resource, config))
            except GRPCError as exc:
                errors[resource.name] = _validation_error(where, exc.message or "", resource.name)
                continue
            except ModuleError as exc:
                errors[resource.name] = ConfigError(where, "", str(exc))
                continue
            if missing := [d for d in found.required if d not in names]:
                field = next((f"attributes.{k}" for k, v in resource.attributes.items() if v == missing[0]), "attributes")
                errors[resource.name] = ConfigError(where, field, f"names '{missing[0]}', which is not in the config",
                                                    did_you_mean(missing[0], names) or "add that resource or fix the name")
            else:
                deps[resource.name] = found
        return deps, errors

    def _needs(self, resource: ResourceConfig) -> list[str]:
        return list(dict.fromkeys([*resource.depends_on, *self.implicit().get(resource.name, ())]))

    def dependencies(self, resource: ResourceConfig) -> list[str]:
        """Full names (`rdk:component:camera/cam`) of what the resource depends on, as AddResource passes them."""
        assert self.config is not None
        return [self.config.resource(n).resource_name for n in self._needs(resource)]

    async def add(self, resource: ResourceConfig, *, reconfigure: bool = False) -> None:
        """Add (or reconfigure) on its owner. While a reconfigure is in flight, calls to the resource wait for it."""
        assert self.config is not None
        owner = self.owner(resource)
        assert owner is not None
        if down := next((n for n in self._needs(resource) if n in self.routes.failed_names()), None):
            error = f"resource '{resource.name}': needs '{down}', which is not running"
            log.error("%s", error)
            self.routes.fail(resource.api, resource.name, error)
            return
        expanded, dependencies = self._expand(resource, self.config), self.dependencies(resource)
        try:
            if reconfigure:
                self.routes.hold(resource.api, resource.name)
                await owner.reconfigure(expanded, dependencies)
            else:
                await owner.add(expanded, dependencies)
        except ModuleError as exc:
            log.error("%s", exc)
            self.routes.fail(resource.api, resource.name, str(exc))
            return
        self.routes.add(resource.api, resource.name, owner.link)
        log.info("%s %s (%s)", "reconfigured" if reconfigure else "added", resource.name, resource.model)

    async def remove(self, resource: ResourceConfig) -> None:
        owner = self.owner(resource)
        self.routes.remove(resource.api, resource.name)
        if owner is not None and owner.is_alive():
            try:
                await owner.remove(resource)
            except ModuleError as exc:
                log.warning("%s", exc)
        log.info("removed %s", resource.name)


def _validation_error(where: str, message: str, resource: str) -> ConfigError:
    """A ValidateConfig refusal: drop the SDK's stray "<class 'type'>: " prefix and a repeated resource name, and name
    the field once (our modules' messages already start with it)."""
    message = message.removeprefix("<class 'type'>: ").strip().removeprefix(f"{resource}: ")
    if message.startswith("'attributes"):
        field, _, rest = message[1:].partition("' ")
        return ConfigError(where, field, rest)
    return ConfigError(where, "attributes", message)
