"""Typed, validated config sections: the machinery, apart from the sections themselves (``v1``).

A section is a frozen dataclass. Each field's metadata may carry ``help`` (shown by ``--help``),
``choices``, ``minimum`` and ``maximum``. :func:`parse_section` turns a mapping read from YAML into a
section, checking every key and value and naming the key and the bad value in the error.
:func:`collect_section` does the same checks but gathers every error instead of stopping at the first
(``tessera config check``); :func:`parse_section` raises the first of them (the daemons).
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

# A bad value is shown in the error, but a hostile file's value can be enormous (a YAML alias bomb
# expands to billions of items when printed): show at most a few items and levels of it.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """``repr(value)``, shortened for values too long to read in one error line."""
    return _SHORT.repr(value)


class ConfigError(ValueError):
    """A config key or value that Tessera cannot accept; the message names the key and the value.

    ``key`` is the path of the offending key in the file (``deviceplugin.gpu_modes.3``) where known,
    so a reader of the file can point at its line."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


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


def coerce(value: Any, tp: Any, key: str, errors: list[ConfigError] | None = None) -> Any:
    """Check ``value`` against the annotated type ``tp``; return it in that type or raise ConfigError.

    Accepts what YAML gives: an int where a float is expected, a numeric string key for ``dict[int, ...]``.
    With ``errors``, a bad item of a list or mapping is appended there and left out, so every bad item
    is reported; a bad value as a whole still raises.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {shown(value)} is not a {_type_name(tp)}", key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: {shown(value)} is not a list", key)
        return [item for item in (_item(lambda v=v, i=i: coerce(v, item_tp, f"{key}[{i}]"), errors)
                                  for i, v in enumerate(value)) if item is not _BAD]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: {shown(value)} is not a mapping", key)
        out = {}
        for k, v in value.items():
            if key_tp is int and isinstance(k, str) and k.strip().lstrip("-").isdigit():
                k = int(k)
            ck = _item(lambda k=k: coerce(k, key_tp, f"{key} key"), errors)
            cv = _item(lambda k=k, v=v: coerce(v, val_tp, f"{key}.{k}"), errors)
            if ck is not _BAD and cv is not _BAD:
                out[ck] = cv
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: {shown(value)} is not true or false", key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: {shown(value)} is not a whole number", key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: {shown(value)} is not a number", key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: {shown(value)} is not a string", key)
    raise TypeError(f"unsupported config type {tp!r} for {key}")


_BAD = object()  # an item left out because it was reported


def _item(check: Any, errors: list[ConfigError] | None) -> Any:
    """``check()``; with ``errors``, a ConfigError is recorded there and ``_BAD`` returned instead."""
    if errors is None:
        return check()
    try:
        return check()
    except ConfigError as exc:
        errors.append(exc)
        return _BAD


def bound_errors(field: dataclasses.Field, value: Any, key: str) -> list[ConfigError]:
    """Every item of ``value`` outside the field's declared choices or range, as errors."""
    meta = field.metadata
    if isinstance(value, dict):
        items = [(f"{key}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = [(key, value)]
    errors = []
    for key, item in items:
        if item is None:
            continue
        if meta.get("choices") and item not in meta["choices"]:
            errors.append(ConfigError(f"{key}: {shown(item)} is not one of {', '.join(map(str, meta['choices']))}", key))
        elif meta.get("minimum") is not None and item < meta["minimum"]:
            errors.append(ConfigError(f"{key}: {shown(item)} is below the minimum {meta['minimum']}", key))
        elif meta.get("maximum") is not None and item > meta["maximum"]:
            errors.append(ConfigError(f"{key}: {shown(item)} is above the maximum {meta['maximum']}", key))
    return errors


def check_bounds(field: dataclasses.Field, value: Any, key: str) -> None:
    """Raise ConfigError where ``value`` is outside the field's declared choices or range."""
    errors = bound_errors(field, value, key)
    if errors:
        raise errors[0]


def parse_section(cls: type[T], data: Any, prefix: str) -> T:
    """Build section ``cls`` from a mapping, rejecting unknown keys and bad values by name: the first
    error found (in the file's order) is raised."""
    errors: list[ConfigError] = []
    section = collect_section(cls, data, prefix, errors)
    if errors:
        raise errors[0]
    return section


def _unknown_key(full: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
    return ConfigError(f"{full}: unknown key; {hint}", full)


def _without(value: Any, bad_keys: set[str | None], key: str) -> Any:
    """``value`` less the items reported bad (a list's or mapping's), so the rest are still checked."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if f"{key}.{k}" not in bad_keys}
    if isinstance(value, list):
        return [v for i, v in enumerate(value) if f"{key}[{i}]" not in bad_keys]
    return dataclasses.MISSING


def collect_section(cls: type[T], data: Any, prefix: str, errors: list[ConfigError]) -> T:
    """Build section ``cls`` from a mapping, appending every unknown key and bad value to ``errors``
    (each keeps its default) and then whatever the section's own cross-key checks refuse
    (``__post_init__`` raising ConfigError, ``consistency_errors()``)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(ConfigError(f"{prefix or 'top level'}: expected a mapping of settings, got {shown(data)}",
                                  prefix or None))
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        full = f"{prefix}.{raw_key}" if prefix else str(raw_key)
        if key not in fields:
            errors.append(_unknown_key(full, key, sorted(fields)))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = collect_section(tp, value, full, errors)
            continue
        try:
            coerced = coerce(value, tp, full, errors)
        except ConfigError as exc:
            errors.append(exc)
            continue
        bad = bound_errors(fields[key], coerced, full)
        errors.extend(bad)
        kept = _without(coerced, {err.key for err in bad}, full) if bad else coerced
        if kept is not dataclasses.MISSING:
            values[key] = kept
    try:
        section = cls(**values)
    except ConfigError as exc:
        errors.append(exc if exc.key else ConfigError(str(exc), prefix or None))
        return cls()
    errors.extend(getattr(section, "consistency_errors", lambda: [])())
    return section


def section_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of a section with their resolved types, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]
