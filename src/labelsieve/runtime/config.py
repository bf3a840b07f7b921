"""The machine config: viam-server's JSON shape, parsed and statically validated before anything starts.

What can be checked without a module process is checked here (keys, names, API and model shapes, executables,
references, cycles); what needs the module (served models, its own `ValidateConfig`) is checked by the resource layer.
viam-server's short model forms are accepted: `"fake"` is `rdk:builtin:fake`, `"builtin"` is `rdk:builtin:builtin`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelsieve.attributes import check_keys
from labelsieve.errors import ConfigError, InvalidMachineConfig

__all__ = ["MachineConfig", "ModuleConfig", "ResourceConfig", "dependency_order", "load_config"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_API = re.compile(r"^[A-Za-z0-9_-]+:(component|service):[A-Za-z0-9_-]+$")
_MODEL = re.compile(r"^[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$")
_SHORT_MODEL = re.compile(r"^[A-Za-z0-9_-]+$")
#: Owner names the runtime uses itself.
_RESERVED_MODULE_NAMES = {"builtin"}
_PLACEHOLDER = re.compile(r"\$\{environment\.([A-Za-z_][A-Za-z0-9_]*)\}")
_PACKAGE_PLACEHOLDER = re.compile(r"\$\{packages(?:\.([^.}]+))?\.([\w:/-]+)\}")  # rdk's packagePlaceholderRegexp
#: Where `${packages.<type>.<name>}` is looked up unless `load_config` is told (`labelsieve run --packages-dir`).
DEFAULT_PACKAGES_DIR = Path("~/.viam/packages")

_TOP_KEYS = {"components", "services", "modules", "packages"}
_IGNORED_TOP = {"network", "auth", "cloud", "agent", "debug", "disable_partial_start", "enable_web_profile", "revision"}
_UNSUPPORTED_TOP = {"remotes", "processes", "fragments", "jobs", "overwrite_fragment_status", "maintenance"}
_UNSUPPORTED_FIX = {
    "remotes": "another machine's resources need viam-server; run this config there, or run the remote's modules here",
    "processes": "start the process yourself, or run this config under viam-server, whose process manager runs them",
    "fragments": "paste the fragment's components, services and modules into this config, or run it under viam-server",
}
_RESOURCE_KEYS = {"name", "api", "type", "namespace", "model", "attributes", "depends_on", "service_configs", "frame",
                  "log_configuration"}
_MODULE_KEYS = {"type", "name", "executable_path", "env", "log_level", "module_id", "version"}
_LOG_LEVELS = {"", "debug", "info", "warn", "warning", "error"}


@dataclass(frozen=True)
class ModuleConfig:
    name: str
    executable_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    log_level: str = ""


@dataclass(frozen=True)
class ResourceConfig:
    name: str
    api: str
    model: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    service_configs: tuple[Mapping[str, Any], ...] = ()
    log_level: str = ""

    @property
    def resource_name(self) -> str:
        """The full name modules use for dependencies, e.g. 'rdk:component:camera/cam'."""
        return f"{self.api}/{self.name}"


@dataclass(frozen=True)
class MachineConfig:
    path: Path
    modules: tuple[ModuleConfig, ...]
    resources: tuple[ResourceConfig, ...]
    ignored: tuple[str, ...] = ()
    #: The file's bytes as parsed, so a watcher started later still sees an edit made meanwhile.
    source: bytes = field(default=b"", compare=False, repr=False)
    #: What viam-server would refuse or read differently, each with its fix (this runtime accepts it).
    warnings: tuple[str, ...] = ()
    #: Unset `${environment.X}` placeholders (read as ""), when loaded with `unset_env="collect"` so that `validate`
    #: reports them beside every other problem; otherwise parsing raises them.
    unset_env: tuple[ConfigError, ...] = ()

    def resource(self, name: str) -> ResourceConfig:
        return next(r for r in self.resources if r.name == name)


def _package_folder(packages: list[Any], kind: str, name: str, where: str, root: Path) -> str:
    """The local folder of the config's package `name`, in viam-server's layout under the packages dir:
    `data/<type>/<package id, '/' -> '-'>-<version>` (older viam-server: `.data/`), or a folder named after the package."""
    config = next((p for p in packages if isinstance(p, dict) and p.get("name") == name), None)
    if config is None:
        raise ConfigError(where, "", f"uses ${{packages.{name}}} but the config's 'packages' has no package named {name!r}",
                          "add it to 'packages' (name, package, type, version)")
    kind, package_type = kind or "ml_model", str(config.get("type") or "ml_model")
    if kind != package_type:
        raise ConfigError(where, "", f"${{packages.{kind}.{name}}} names a {kind} but {name!r} is a {package_type}",
                          f"use ${{packages.{package_type}.{name}}}")
    root = root.expanduser()
    stem = str(config.get("package", name)).replace("/", "-")
    version = str(config.get("version") or "latest")
    for data in (root / "data" / kind, root / ".data" / kind):
        if (data / f"{stem}-{version}").is_dir():
            return str(data / f"{stem}-{version}")
        found = sorted((p for p in data.glob(f"{stem}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if found and version == "latest":
            return str(found[-1])  # the newest one downloaded
    if (root / name).is_dir():
        return str(root / name)
    raise ConfigError(where, "", f"package {name!r} ({config.get('package', name)} {version}) is not in {root}",
                      f"download it into {root / 'data' / kind / f'{stem}-{version}'}, or point --packages-dir at "
                      "viam-server's packages folder")


def _substitute(value: Any, where: str, field: str, unset: list[ConfigError], packages: list[Any], root: Path) -> Any:
    """Expand ${environment.X} and ${packages.[type.]name} everywhere, as viam-server does; a missing variable is a
    problem (named by the module or resource and field that use it) appended to `unset`, not silently an empty string;
    a missing package is an error."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                unset.append(ConfigError(where, field, f"uses ${{environment.{m.group(1)}}} but {m.group(1)} is not set",
                                         f"export {m.group(1)}=... before starting, or remove the placeholder"))
            return os.environ.get(m.group(1), "")
        value = _PLACEHOLDER.sub(repl, value)
        return _PACKAGE_PLACEHOLDER.sub(lambda m: _package_folder(packages, m.group(1) or "", m.group(2), where, root),
                                       value)
    if isinstance(value, list):
        return [_substitute(v, where, f"{field}[{i}]", unset, packages, root) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute(v, where, f"{field}.{k}" if field else k, unset, packages, root) for k, v in value.items()}
    return value


def _expand(raw: dict[str, Any], unset: list[ConfigError], packages: list[Any], root: Path) -> dict[str, Any]:
    """Each module's and resource's placeholders, located by its name."""
    expanded = dict(raw)
    for section in ("modules", "components", "services"):
        items = raw.get(section)
        if isinstance(items, list):
            kind = "module" if section == "modules" else "resource"
            expanded[section] = [_substitute(item, f"{kind} '{item.get('name', f'{section}[{i}]')}'", "", unset, packages,
                                             root)
                                 if isinstance(item, dict) else item for i, item in enumerate(items)]
    return expanded


def _expect(value: Any, kind: type | tuple[type, ...], resource: str, field_name: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(resource, field_name, f"must be {what}, got {json.dumps(value)}")
    return value


def _parse_module(raw: Any, index: int, base: Path) -> ModuleConfig:
    _expect(raw, dict, f"modules[{index}]", "", "an object")
    name = raw.get("name") or f"modules[{index}]"
    where = f"module '{name}'"
    check_keys(where, "", raw, _MODULE_KEYS)
    if not _NAME.match(str(raw.get("name", ""))):
        raise ConfigError(where, "name", "must be letters, digits, '-' or '_'", "give the module a short unique name")
    if raw["name"] in _RESERVED_MODULE_NAMES:
        raise ConfigError(where, "name", f"'{raw['name']}' is reserved for the runtime's own services", "pick another name")
    kind = raw.get("type", "local")
    if kind != "local":
        raise ConfigError(where, "type", f"'{kind}' modules are not supported by the embedded runtime",
                          "use \"type\": \"local\" with an executable_path")
    exe_raw = _expect(raw.get("executable_path"), str, where, "executable_path", "a path to the module's run script")
    exe = (base / Path(exe_raw).expanduser()).resolve()
    if exe.is_dir():
        raise ConfigError(where, "executable_path", f"{exe} is a folder, not a program", "point it at the module's run script")
    if not exe.is_file():
        raise ConfigError(where, "executable_path", f"{exe} does not exist", "paths are relative to the config file")
    if not os.access(exe, os.X_OK):
        raise ConfigError(where, "executable_path", f"{exe} is not executable", f"chmod +x {exe}")
    env = _expect(raw.get("env", {}), dict, where, "env", "an object of strings")
    for key, value in env.items():
        _expect(value, str, where, f"env.{key}", "a string")
    level = str(raw.get("log_level", "")).lower()
    if level not in _LOG_LEVELS:
        raise ConfigError(where, "log_level", f"unknown level '{level}'", "use debug, info, warn or error")
    return ModuleConfig(raw["name"], exe, dict(env), level)


def _parse_resource(raw: Any, section: str, index: int) -> ResourceConfig:
    _expect(raw, dict, f"{section}[{index}]", "", "an object")
    name = raw.get("name")
    where = f"{section[:-1]} '{name}'" if name else f"{section}[{index}]"
    check_keys(where, "", raw, _RESOURCE_KEYS)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(where, "name", "must be letters, digits, '-' or '_' (and not empty)")
    kind = "component" if section == "components" else "service"
    api = raw.get("api")
    if api is None and "type" in raw:  # viam-server's older shape: {"namespace": "rdk", "type": "camera"}
        api = f"{raw.get('namespace', 'rdk')}:{kind}:{raw['type']}"
    if not isinstance(api, str) or not _API.match(api):
        raise ConfigError(where, "api", f"must look like 'rdk:{kind}:<subtype>', got {json.dumps(api)}",
                          f"e.g. \"rdk:{kind}:camera\"" if kind == "component" else "e.g. \"rdk:service:vision\"")
    if api.split(":")[1] != kind:
        raise ConfigError(where, "api", f"'{api}' is not a {kind}", f"move it to \"{'services' if kind == 'component' else 'components'}\"")
    model = raw.get("model")
    if isinstance(model, str) and _SHORT_MODEL.match(model):  # viam-server's short forms of its builtin models
        model = f"rdk:builtin:{model}"
    if not isinstance(model, str) or not _MODEL.match(model):
        raise ConfigError(where, "model", f"must be a 'namespace:family:name' triplet, got {json.dumps(model)}",
                          "e.g. \"labelsieve:camera:media\"")
    attributes = _expect(raw.get("attributes", {}), dict, where, "attributes", "an object")
    depends_on = _expect(raw.get("depends_on", []), list, where, "depends_on", "a list of resource names")
    for dep in depends_on:
        _expect(dep, str, where, "depends_on", "a list of resource names")
    service_configs = _expect(raw.get("service_configs", []), list, where, "service_configs", "a list")
    log = _expect(raw.get("log_configuration", {}), dict, where, "log_configuration", "an object")
    return ResourceConfig(name, api, model, attributes, tuple(depends_on), tuple(service_configs),
                          str(log.get("level", "")).lower())


def parse_config(raw: Any, path: Path, source: bytes = b"", unset_env: str = "raise",
                 packages_dir: Path = DEFAULT_PACKAGES_DIR) -> MachineConfig:
    where = path.name
    _expect(raw, dict, where, "", "a JSON object")
    for key in raw:
        if key in _UNSUPPORTED_TOP:
            raise ConfigError(where, key, "is not supported by labelsieve's embedded runtime",
                              _UNSUPPORTED_FIX.get(key, "run this config under viam-server"))
    check_keys(where, "", (k for k in raw if k not in _IGNORED_TOP), _TOP_KEYS)
    unset: list[ConfigError] = []
    raw = _expand(raw, unset, _expect(raw.get("packages", []), list, where, "packages", "a list"), packages_dir)
    if unset and unset_env == "raise":
        raise unset[0] if len(unset) == 1 else InvalidMachineConfig(unset)
    modules = tuple(_parse_module(m, i, path.parent) for i, m in enumerate(_expect(raw.get("modules", []), list, where, "modules", "a list")))
    resources = tuple(
        _parse_resource(r, section, i)
        for section in ("components", "services")
        for i, r in enumerate(_expect(raw.get(section, []), list, where, section, "a list"))
    )
    _unique(f"module '{m.name}'" for m in modules)
    _unique(f"resource '{r.name}'" for r in resources)
    names = {r.name for r in resources}
    for r in resources:
        for dep in r.depends_on:
            if dep not in names:
                raise ConfigError(f"resource '{r.name}'", "depends_on", f"names '{dep}', which is not in the config",
                                  "add that resource or remove the dependency")
    config = MachineConfig(path, modules, resources, tuple(sorted(set(raw) & _IGNORED_TOP)), source,
                           tuple(_viam_server_differences(raw, path.parent)), tuple(unset))
    dependency_order(config, {})
    return config


def _viam_server_differences(raw: dict[str, Any], base: Path) -> Iterable[str]:
    """viam-server needs an absolute `executable_path` and sets no config directory, so a relative path in an attribute
    would be read against the module's own folder there, not against the config file as here."""
    for m in raw.get("modules", []):
        exe = str(m.get("executable_path", ""))
        if exe and not Path(exe).expanduser().is_absolute():
            yield (f"module '{m.get('name')}': 'executable_path' {exe!r} is relative; viam-server needs an absolute path: "
                   f"use \"{os.path.abspath(base / exe)}\"")
    for section in ("components", "services"):
        for r in raw.get(section, []):
            for key, value in (r.get("attributes") or {}).items():
                if isinstance(value, str) and value.strip(".") and not Path(value).expanduser().is_absolute() \
                        and (base / value).exists():
                    yield (f"resource '{r.get('name')}': 'attributes.{key}' {value!r} is a relative path; viam-server "
                           f"would not read it against this file's folder: use \"{os.path.abspath(base / value)}\"")


def _unique(labels: Iterable[str]) -> None:
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise ConfigError(label, "name", "is used twice", "names must be unique")
        seen.add(label)


def load_config(path: str | os.PathLike[str], unset_env: str = "raise",
                packages_dir: Path = DEFAULT_PACKAGES_DIR) -> MachineConfig:
    path = Path(path).resolve()
    try:
        source = path.read_bytes()
        raw = json.loads(source)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path.name, "", f"is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path.name, "", f"is not UTF-8 text: {exc}") from None
    except RecursionError:
        raise ConfigError(path.name, "", "is nested too deeply to be a machine config") from None
    if where := _non_finite(raw):
        raise ConfigError(path.name, where, "is NaN or Infinity, which JSON does not allow (Python's parser does)",
                          "use a finite number")
    return parse_config(raw, path, source, unset_env, packages_dir)


def _non_finite(raw: Any) -> str:
    """The path of the first NaN or Infinity (a NaN frame rate would pass validation, then fail every call), or ""."""
    stack: list[tuple[str, Any]] = [("", raw)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where
        if isinstance(value, dict):
            stack += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return ""


def dependency_order(config: MachineConfig, implicit: Mapping[str, Iterable[str]]) -> list[ResourceConfig]:
    """Resources sorted so each comes after what it depends on (`depends_on` plus implicit deps); a cycle is a ConfigError."""
    deps = {r.name: set(r.depends_on) | set(implicit.get(r.name, ())) for r in config.resources}
    order: list[ResourceConfig] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*trail[trail.index(name):], name]
            raise ConfigError(f"resource '{name}'", "depends_on", f"dependency cycle: {' -> '.join(cycle)}",
                              "remove one of these dependencies")
        state[name] = "visiting"
        for dep in sorted(deps[name]):
            if dep not in deps:
                raise ConfigError(f"resource '{name}'", "attributes", f"depends on '{dep}', which is not in the config",
                                  "add that resource or fix the name")
            visit(dep, [*trail, name])
        state[name] = "done"
        order.append(config.resource(name))

    for r in config.resources:
        visit(r.name, [])
    return order
