"""Tessera's config: one YAML file for all daemons, a validated section each, flags on top."""

from tessera.config.loader import (
    CONFIG_ENV,
    ConfigProblem,
    add_common_flags,
    add_section_flags,
    config_from_args,
    config_problems,
    daemon_config,
    load_config,
    parse_config,
    read_config_file,
)
from tessera.config.schema import ConfigError, ConfigFileError
from tessera.config.v1 import (
    CONFIG_VERSION,
    DevicePluginConfig,
    DraPluginConfig,
    ExporterConfig,
    ExtenderConfig,
    HookConfig,
    LoggingConfig,
    TesseraConfig,
)

__all__ = [
    "CONFIG_ENV", "CONFIG_VERSION", "ConfigError", "ConfigProblem", "ConfigFileError", "DevicePluginConfig", "DraPluginConfig", "ExporterConfig", "ExtenderConfig",
    "HookConfig", "LoggingConfig", "TesseraConfig", "add_common_flags", "add_section_flags",
    "config_from_args", "config_problems", "daemon_config", "load_config", "parse_config", "read_config_file",
]
