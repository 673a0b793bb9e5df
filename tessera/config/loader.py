"""Reading the config file and layering command-line flags over it.

Precedence, lowest first: the defaults in ``v1``, the YAML file, the flags. Every daemon's flags are
made from its section, so ``--help`` shows each key with its meaning and default.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import os
import typing
from typing import Any

from tessera.config.document import ConfigDocument, read_config_document
from tessera.config.schema import (
    ConfigError,
    ConfigFileError,
    check_bounds,
    coerce,
    collect_section,
    parse_section,
    section_fields,
)
from tessera.config.v1 import TesseraConfig
from tessera.yamlfile import YamlFileError

CONFIG_ENV = "TESSERA_CONFIG"


def load_config(path: str | None = None) -> TesseraConfig:
    """Read and validate the config file; no path (and no ``TESSERA_CONFIG``) means all defaults."""
    path = path or os.environ.get(CONFIG_ENV) or None
    if not path:
        return TesseraConfig()
    return parse_config(read_config_file(path).data, source=path)


def read_config_file(path: str) -> ConfigDocument:
    """The config file at ``path`` parsed, with its key lines, not yet validated; ConfigFileError
    ("config file <path>: <reason>") where it cannot be read as YAML."""
    try:
        return read_config_document(path)
    except YamlFileError as exc:
        raise ConfigFileError(f"config file {path}: {exc}") from None


@dataclass(frozen=True)
class ConfigProblem:
    """One error in a config file: the line it is on where known, and the message naming key and value."""

    line: int | None
    message: str


def config_problems(document: ConfigDocument) -> list[ConfigProblem]:
    """Every error the schema finds in a parsed config file, in the file's order where lines are known;
    the same checks that make a daemon refuse the file (which stops at the first)."""
    errors: list[ConfigError] = []
    collect_section(TesseraConfig, document.data, "", errors)
    problems = [ConfigProblem(document.line_of(err.key), str(err)) for err in errors]
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def parse_config(data: Any, source: str = "config") -> TesseraConfig:
    """Validate a parsed config document; errors name ``<source>: <section>.<key>``."""
    try:
        return parse_section(TesseraConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _written_default(field: dataclasses.Field) -> Any:
    """A key's default as its flag is written: a list's items joined by commas (the flag's own syntax);
    a list or dict default lives in ``default_factory``, not ``default``."""
    value = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return ",".join(str(item) for item in value) if isinstance(value, list) else value


def add_section_flags(parser: argparse.ArgumentParser, section_cls: type) -> None:
    """Add one flag per scalar key of a config section, with its help and default."""
    group = parser.add_argument_group("settings (also keys of the config file's section; flags win)")
    for field, tp in section_fields(section_cls):
        if not field.metadata.get("flag", True):
            continue
        help_text = f"{field.metadata['help']} (default: {_written_default(field)!r})"
        kwargs: dict[str, Any] = {"dest": f"cfg_{field.name}", "default": argparse.SUPPRESS, "help": help_text}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = field.name.upper()
            kwargs["type"] = str
            if field.metadata.get("choices"):
                kwargs["metavar"] = "{" + ",".join(field.metadata["choices"]) + "}"
        group.add_argument(_flag_name(field.name), **kwargs)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--log-level`` and ``--log-format``, shared by every daemon."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"Tessera config file (YAML); default: ${CONFIG_ENV} or built-in defaults")
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                        help="log level (default: the config file's logging.level, else info)")
    parser.add_argument("--log-format", default=None, choices=("auto", "json", "console"),
                        help="log format (default: the config file's logging.format, else auto: "
                             "console on a terminal, JSON otherwise)")


def _parse_flag_value(raw: str, tp: Any, key: str) -> Any:
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not a whole number") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not a number") from None
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        return [_parse_flag_value(p.strip(), item_tp, key) for p in raw.split(",") if p.strip()]
    return coerce(raw, tp, key)


def config_from_args(args: argparse.Namespace, section: str, path: str | None = None) -> TesseraConfig:
    """The config file named by ``path`` (default: ``args.config``) with ``args``' flags for ``section``
    laid over it."""
    config = load_config(path or getattr(args, "config", None))
    section_value = getattr(config, section)
    overrides = {}
    for field, tp in section_fields(type(section_value)):
        dest = f"cfg_{field.name}"
        if not hasattr(args, dest):
            continue
        key = _flag_name(field.name)
        value = getattr(args, dest)
        value = value if tp is bool else _parse_flag_value(value, tp, key)
        check_bounds(field, value, key)
        overrides[field.name] = value
    logging_overrides = {}
    if getattr(args, "log_level", None):
        logging_overrides["level"] = args.log_level
    if getattr(args, "log_format", None):
        logging_overrides["format"] = args.log_format
    return dataclasses.replace(
        config,
        **{section: dataclasses.replace(section_value, **overrides)},
        logging=dataclasses.replace(config.logging, **logging_overrides),
    )


def daemon_config(parser: argparse.ArgumentParser, argv: list[str] | None, section: str) -> TesseraConfig:
    """A daemon's config from its command line (``config_from_args``); a bad file or flag ends the
    program with exit status 2 and one line on stderr naming the program and the problem."""
    args = parser.parse_args(argv)
    try:
        return config_from_args(args, section)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: {err}\n")
