"""Typed, validated config sections: the machinery, apart from the sections themselves (``v1``).

A section is a frozen dataclass. Each field's metadata may carry ``help`` (shown by ``--help``),
``choices``, ``minimum`` and ``maximum``. :func:`parse_section` turns a mapping read from YAML into a
section, checking every key and value and naming the key and the bad value in the error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that Tessera cannot accept; the message names the key and the value."""


class ConfigFileError(ConfigError):
    """A config file that cannot be read as YAML at all (missing, not UTF-8, not YAML, nested too deeply)."""


def setting(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
            maximum: float | None = None, flag: bool = True) -> Any:
    """Declare one config field: its default, what it means, and its bounds."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "flag": flag}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = ", ".join(_type_name(a) for a in typing.get_args(tp))
    return f"{origin.__name__}[{args}]"


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotated type ``tp``; return it in that type or raise ConfigError.

    Accepts what YAML gives: an int where a float is expected, a numeric string key for ``dict[int, ...]``.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not a {_type_name(tp)}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: {value!r} is not a list")
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: {value!r} is not a mapping")
        out = {}
        for k, v in value.items():
            if key_tp is int and isinstance(k, str) and k.strip().lstrip("-").isdigit():
                k = int(k)
            out[coerce(k, key_tp, f"{key} key")] = coerce(v, val_tp, f"{key}.{k}")
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: {value!r} is not true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: {value!r} is not a whole number")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: {value!r} is not a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: {value!r} is not a string")
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def check_bounds(field: dataclasses.Field, value: Any, key: str) -> None:
    """Raise ConfigError where ``value`` is outside the field's declared choices or range."""
    meta = field.metadata
    if isinstance(value, dict):
        items = [(f"{key}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = [(key, value)]
    for key, item in items:
        if item is None:
            continue
        if meta.get("choices") and item not in meta["choices"]:
            raise ConfigError(f"{key}: {item!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("minimum") is not None and item < meta["minimum"]:
            raise ConfigError(f"{key}: {item!r} is below the minimum {meta['minimum']}")
        if meta.get("maximum") is not None and item > meta["maximum"]:
            raise ConfigError(f"{key}: {item!r} is above the maximum {meta['maximum']}")


def parse_section(cls: type[T], data: Any, prefix: str) -> T:
    """Build section ``cls`` from a mapping, rejecting unknown keys and bad values by name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'top level'}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        full = f"{prefix}.{raw_key}" if prefix else str(raw_key)
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{full}: unknown key (known keys: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = parse_section(tp, value, full)
            continue
        coerced = coerce(value, tp, full)
        check_bounds(fields[key], coerced, full)
        values[key] = coerced
    return cls(**values)


def section_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of a section with their resolved types, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]
