"""Typed, validated attributes: one config object per stage, used by `validate_config`, `new` and Python callers alike.

A stage declares a frozen dataclass subclassing `Attributes`; `parse(resource, mapping)` turns a Viam attribute struct (where
every number arrives as a float) or keyword arguments into it, and every mistake becomes a `ConfigError` naming the resource,
the field and the fix, with a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin

from labelsieve.errors import ConfigError, FieldProblem

log = logging.getLogger(__name__)

__all__ = ["Attributes", "FieldProblem", "check_keys", "did_you_mean", "resolve_path"]


def resolve_path(path: str, base: Path | None = None) -> Path:
    """A path attribute: relative to the machine config's folder, as viam users expect of paths in a config. The runtime
    passes `base` to its builtins; a module process has it in `LABELSIEVE_CONFIG_DIR` (set for it alone, as viam-server
    sets VIAM_HOME); without either, relative to the working directory."""
    folder = base or os.environ.get("LABELSIEVE_CONFIG_DIR")
    p = Path(path).expanduser()
    return p if p.is_absolute() or not folder else Path(folder) / p


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else ""


def check_keys(resource: str, where: str, given: typing.Iterable[str], allowed: typing.Collection[str]) -> None:
    """Reject unknown keys with a suggestion; `where` prefixes the field path (e.g. 'attributes.')."""
    for key in given:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"known keys: {', '.join(sorted(allowed))}"
            raise ConfigError(resource, f"{where}{key}", "is not a known key", hint)


_NONE = type(None)


def _coerce(value: Any, hint: Any, field: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        problems: list[FieldProblem] = []
        for arm in (a for a in args if a is not _NONE):
            try:
                return _coerce(value, arm, field)
            except FieldProblem as exc:
                problems.append(exc)
        inner = [p for p in problems if p.field != field]  # the value had an arm's shape; its part was wrong
        kinds = [m.group(1) for p in problems if (m := re.fullmatch(r"must be (.+), got .*", p.problem, re.S))]
        if inner or len(kinds) != len(problems):
            raise (inner or problems)[0]
        raise FieldProblem(field, f"must be {' or '.join(kinds)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise FieldProblem(field, f"must be one of {', '.join(map(repr, args))}, got {value!r}",
                               did_you_mean(str(value), map(str, args)))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise FieldProblem(field, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise FieldProblem(field, f"must be a whole number, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldProblem(field, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise FieldProblem(field, f"must be a string, got {value!r}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise FieldProblem(field, f"must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{field}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        val = args[1] if len(args) == 2 else Any
        if not isinstance(value, Mapping):
            raise FieldProblem(field, f"must be an object{' of numbers per class' if val is float else ''}, got {value!r}")
        return {str(k): _coerce(v, val, f"{field}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Attributes):  # a nested object, e.g. one of a list of rules
        if not isinstance(value, Mapping):
            raise FieldProblem(field, f"must be an object, got {value!r}")
        try:
            return hint.parse("", value)
        except ConfigError as exc:
            raise FieldProblem(f"{field}.{exc.field.removeprefix('attributes.')}", exc.problem, exc.fix) from None
    raise TypeError(f"unsupported attribute type {hint!r} for {field}")  # a programming error, not user input


@dataclasses.dataclass(frozen=True)
class Attributes:
    """Base for a stage's attributes. Subclasses are frozen dataclasses and may override `check`."""

    #: Keys accepted for compatibility but ignored, e.g. keys viam-server adds itself.
    ignored_keys: ClassVar[frozenset[str]] = frozenset()
    #: Old key -> its new name: still read, with one log line naming the new key, so existing configs keep working.
    renamed: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def parse(cls, resource: str, attributes: Mapping[str, Any] | None = None) -> Self:
        attributes = dict(attributes or {})
        for old, new in cls.renamed.items():
            if old in attributes:
                if new in attributes:
                    raise ConfigError(resource, f"attributes.{old}", f"is the old name of '{new}', which is also set",
                                      f"keep only '{new}'")
                log.warning("%s: 'attributes.%s' is deprecated; call it '%s'", resource or cls.__name__, old, new)
                attributes[new] = attributes.pop(old)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        check_keys(resource, "attributes.", (k for k in attributes if k not in cls.ignored_keys), fields)
        values: dict[str, Any] = {}
        try:
            for name, f in fields.items():
                if name in attributes:
                    values[name] = _coerce(attributes[name], hints[name], name)
                elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise FieldProblem(name, "is required", f"add \"{name}\" to the resource's attributes")
            parsed = cls(**values)
            parsed.check()
        except FieldProblem as exc:
            raise ConfigError(resource, f"attributes.{exc.field}", exc.problem, exc.fix) from None
        return parsed

    def check(self) -> None:
        """Cross-field validation; raise `FieldProblem`."""
