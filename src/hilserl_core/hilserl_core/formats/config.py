"""Typed configuration: one declared schema per component, loaded from YAML.

A component declares its parameters once, as a dataclass whose fields carry a
description, units, a valid range and whether they may change while running::

    @dataclass
    class MuxConfig:
        speed_scale: float = param(1.0, "operator twist gain", low=0.0, high=5.0, live=True)

The same declaration is used to validate ``config/*.yaml`` (errors name the file,
the key and the allowed range), and by the ROS nodes to declare their parameters
with descriptors, so a number lives in exactly one YAML and one schema.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Type, TypeVar

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "ParamSpec",
    "param",
    "describe",
    "from_mapping",
    "load_yaml",
    "to_dict",
    "validate",
    "replace",
    "nest",
    "flatten",
    "closest",
    "did_you_mean",
    "yaml_error_text",
    "read_yaml_file",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ParamSpec:
    """What a schema says about one parameter (dotted ``name`` for nested sections)."""

    name: str
    type: Any
    default: Any
    description: str
    units: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None
    live: bool = False

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        return f"[{lo}, {hi}]"


def closest(name: str, candidates: "Sequence[str] | set") -> Optional[str]:
    """The candidate most like ``name`` (a misspelling's intended key), or None if none is close."""
    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, candidates: "Sequence[str] | set") -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    match = closest(name, candidates)
    return f" (did you mean '{match}'?)" if match else ""


def yaml_error_text(path: "str | Path", exc: Exception) -> str:
    """One line for a YAML syntax error: ``<file>:<line>: not valid YAML: <problem> (while parsing
    <construct> from line <n>)``. The line is where parsing failed; at the end of the file (an
    unclosed ``[``) it is where the unfinished construct starts."""
    problem_mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    mark = problem_mark or context_mark
    if context_mark is not None and (mark is None or "<stream end>" in problem):
        mark = context_mark
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    if context:
        problem += f" ({' '.join(str(context).split())}" + (f" from line {context_mark.line + 1})" if context_mark else ")")
    return f"{where}: not valid YAML: {problem}"


def read_yaml_file(path: "str | Path", what: str = "config file") -> Any:
    """A YAML file's content; a missing file or a syntax error is one :class:`ConfigError` line."""
    import yaml  # local import: pyyaml is only needed when reading files

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_text(path, exc)) from None


def param(
    default: Any,
    description: str,
    *,
    units: str = "",
    low: Optional[float] = None,
    high: Optional[float] = None,
    choices: Optional[Sequence[Any]] = None,
    live: bool = False,
) -> Any:
    """Declare a dataclass field with its description, units and valid range.

    ``live=True`` marks a parameter a user may change on a running node
    (``ros2 param set``) without a restart. Sequence defaults (lists) are
    stored as tuples so configs stay hashable and immutable.
    """
    if isinstance(default, list):
        default = tuple(default)
    meta = {
        "description": description,
        "units": units,
        "low": low,
        "high": high,
        "choices": tuple(choices) if choices is not None else None,
        "live": live,
    }
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def describe(cls: type, prefix: str = "") -> list[ParamSpec]:
    """Flatten a config dataclass (nested sections included) into ParamSpecs."""
    specs: list[ParamSpec] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = prefix + f.name
        if _is_dataclass_type(tp):
            specs.extend(describe(tp, name + "."))
            continue
        m = f.metadata
        if "description" not in m:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with config.param(...) so it has a description")
        default = f.default if f.default is not dataclasses.MISSING else None
        specs.append(
            ParamSpec(
                name=name,
                type=tp,
                default=default,
                description=m["description"],
                units=m["units"],
                low=m["low"],
                high=m["high"],
                choices=m["choices"],
                live=m["live"],
            )
        )
    return specs


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the declared type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        elem = args[0] if args else Any
        return tuple(_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _check_range(spec: ParamSpec, value: Any, where: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v is None:
            continue
        if spec.choices is not None and v not in spec.choices:
            raise ConfigError(f"{where} = {v!r} is not allowed; {spec.range_text()} ({spec.description})")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{where} = {v!r} must be finite ({spec.description})")
            if (spec.low is not None and v < spec.low) or (spec.high is not None and v > spec.high):
                unit = f" {spec.units}" if spec.units else ""
                raise ConfigError(
                    f"{where} = {v!r}{unit} is out of range {spec.range_text()} ({spec.description})"
                )


def from_mapping(cls: Type[T], data: Optional[Mapping[str, Any]], source: str = "<config>", prefix: str = "") -> T:
    """Build ``cls`` from a (YAML-loaded) mapping; missing keys take their defaults.

    Unknown keys are errors (a typo must not silently fall back to a default).
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        named = ", ".join(f"{prefix}{k}{did_you_mean(str(k), fields)}" for k in unknown)
        raise ConfigError(f"{source}: unknown key(s) {named}; valid keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    specs = {s.name: s for s in describe(cls)}
    for name, f in fields.items():
        tp = hints[name]
        if name not in data:
            continue
        where = f"{source}: {prefix}{name}"
        if _is_dataclass_type(tp):
            kwargs[name] = from_mapping(tp, data[name], source, prefix + name + ".")
            continue
        value = _coerce(data[name], tp, where)
        _check_range(specs[name], value, where)
        kwargs[name] = value
    obj = cls(**kwargs)
    return obj


def validate(obj: Any, source: str = "<config>", prefix: str = "") -> None:
    """Re-check every value of a config instance against its schema."""
    hints = _hints(type(obj))
    specs = {s.name: s for s in describe(type(obj))}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{source}: {prefix}{f.name}"
        if _is_dataclass_type(hints[f.name]):
            validate(value, source, prefix + f.name + ".")
            continue
        _check_range(specs[f.name], _coerce(value, hints[f.name], where), where)


def replace(obj: T, source: str = "<override>", **changes: Any) -> T:
    """``dataclasses.replace`` that type-checks and range-checks the new values."""
    merged = {**to_dict(obj), **changes}
    return from_mapping(type(obj), merged, source)


def nest(flat: Mapping[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (ROS parameter names of nested sections)."""
    out: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    return out


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the inverse of :func:`nest`."""
    out: dict = {}
    for k, v in nested.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(obj: Any) -> dict:
    """Plain dict (tuples become lists) suitable for YAML/JSON output."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(obj)


def load_yaml(cls: Type[T], path: "str | Path", section: Optional[str] = None) -> T:
    """Load ``cls`` from a YAML file, optionally from a dotted ``section`` of it."""
    path = Path(path)
    data = read_yaml_file(path) or {}
    prefix = ""
    if section:
        for part in section.split("."):
            if not isinstance(data, Mapping) or part not in data:
                raise ConfigError(f"{path}: missing section '{section}' (no key '{part}')")
            data = data[part]
        prefix = section + "."
    return from_mapping(cls, data, str(path), prefix)
