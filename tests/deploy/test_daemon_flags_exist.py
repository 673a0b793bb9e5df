"""Every Tessera container's arguments in deploy/ are flags its daemon's real parser reads as the values
written, and the host paths those flags name are mounted into that container."""

from __future__ import annotations

import os
import typing

import pytest
import yaml

from manifests import OVERLAYS, containers, flag

from deviceplugin.main import build_parser as device_plugin_parser
from draplugin.main import build_parser as dra_plugin_parser
from exporter.main import build_parser as exporter_parser
from extender.main import build_parser as extender_parser
from hook.install import hook_entries
from hook.main import build_parser as hook_parser
from hook.main import settings_from_args
from hook.settings import HookSettings, parse_fast
from tessera.config import (
    DevicePluginConfig,
    DraPluginConfig,
    ExporterConfig,
    ExtenderConfig,
    HookConfig,
    LoggingConfig,
    config_from_args,
)
from tessera.config.schema import section_fields

SECTIONS = {DevicePluginConfig: "deviceplugin", ExtenderConfig: "extender", ExporterConfig: "exporter",
            HookConfig: "hook", DraPluginConfig: "draplugin"}
# command -> (parser, what the command puts before its arguments, its config section)
ENTRY_POINTS = {
    "tessera-extender": (extender_parser, [], ExtenderConfig),
    "tessera-device-plugin": (device_plugin_parser, [], DevicePluginConfig),
    "tessera-dra-plugin": (dra_plugin_parser, [], DraPluginConfig),
    "tessera-exporter": (exporter_parser, [], ExporterConfig),
    # deploy/node/install-hook.sh ends in: tessera-hook install --root ... --hook-path ... "$@"
    "tessera-install-hook": (hook_parser, ["install", "--root", "/host", "--hook-path", "/opt/tessera/current/bin/x"],
                             HookConfig),
}


def tessera_containers(objects):
    return [(w, c) for w, c in containers(objects) if c.get("command", [""])[0] in ENTRY_POINTS]


def test_every_tessera_command_is_one_of_the_entry_points(rendered):
    commands = {c["command"][0] for _, c in tessera_containers(rendered["default"])}
    assert commands == set(ENTRY_POINTS)


def written_value(text: str, tp: object) -> object:
    """What ``--key=text`` means for a key of type ``tp``: a list is comma-separated."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return [item(part) for part in text.split(",")]
    return tp(text)


def keys_of(section_cls: type) -> dict[tuple[str, str], tuple]:
    """(section, key) -> (field, type) for a daemon's section and the logging section its flags also set."""
    return {(part, f.name): (f, tp) for part, cls in (("logging", LoggingConfig), (SECTIONS[section_cls], section_cls))
            for f, tp in section_fields(cls)}


def expected_settings(args: list[str], section_cls: type) -> dict[tuple[str, str], object]:
    """(section, key) -> value for each flag in ``args``: ``--key=value``, or a switch ``--key``/``--no-key``."""
    section = SECTIONS[section_cls]
    types = {where: tp for where, (_, tp) in keys_of(section_cls).items()}
    out: dict[tuple[str, str], object] = {}
    for arg in args:
        name, eq, text = arg.removeprefix("--").partition("=")
        key = name.replace("-", "_")
        if not eq:
            on = not key.startswith("no_")
            where = (section, key if on else key.removeprefix("no_"))
            assert types.get(where) is bool, f"{arg}: not a switch of the {section} config section"
            out[where] = on
            continue
        where = ("logging", key.removeprefix("log_")) if key in ("log_level", "log_format") else (section, key)
        assert types.get(where) not in (None, bool), f"{arg}: not a valued key of the {where[0]} config section"
        out[where] = written_value(text, types[where])
    return out


def other_value(value: object, field, tp: object) -> object:
    """A valid value for ``field`` that is not ``value``: what a config file under the flags says."""
    meta = field.metadata
    if tp is bool:
        return not value
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != value)
    if tp is int:
        return value + 1 if meta.get("maximum") is None or value < meta["maximum"] else value - 1
    if tp is float:
        return value + 1.0
    if typing.get_origin(tp) is list:
        return [*value, 4242 if typing.get_args(tp) == (int,) else "from-the-file"]
    host, _, port = str(value).rpartition(":")
    if host and port.isdigit():  # a listen address: another port
        return f"{host}:{int(port) + 1}"
    return f"{value}-from-the-file"


def config_file_under(expected: dict[tuple[str, str], object], section_cls: type, path) -> str:
    """A config file giving every key the manifest's flags set another value: the flags must win."""
    keys = keys_of(section_cls)
    doc: dict = {"version": "v1"}
    for (part, key), value in expected.items():
        doc.setdefault(part, {})[key] = other_value(value, *keys[(part, key)])
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def hook_values(settings: HookSettings) -> dict[tuple[str, str], object]:
    """The hook's settings as (section, key) -> value, lists as the config holds them."""
    values = {k: getattr(settings, k) for k in HookSettings.__slots__}
    return {("hook", k): list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_flags_parse_to_the_values_written(rendered, overlay, command, tmp_path):
    """Each flag in the manifests reaches the daemon's config as the value the manifest writes, through
    its real parser and over a config file that says otherwise for every key (so a flag the daemon
    ignored cannot pass for its default); the hook's settings also survive the hook entry that
    ``tessera-hook install`` writes and the runtime runs (the hook's fast parser)."""
    make_parser, prefix, section_cls = ENTRY_POINTS[command]
    section = SECTIONS[section_cls]
    seen = 0
    for workload, container in tessera_containers(rendered[overlay]):
        if container["command"][0] != command:
            continue
        seen += 1
        where = f"{overlay}: {workload}/{container['name']}"
        args = container["command"][1:] + container.get("args", [])
        expected = expected_settings(args, section_cls)
        config_file = config_file_under(expected, section_cls, tmp_path / f"{workload}-{container['name']}.yaml")
        try:
            parsed, unknown = make_parser().parse_known_args(prefix + ["--config", config_file] + args)
        except SystemExit:
            pytest.fail(f"{where}: {command} refuses {args}")
        assert not unknown, f"{where}: {command} has no flags {unknown}"
        config = config_from_args(parsed, section)
        for (part, key), value in expected.items():
            got = getattr(getattr(config, part), key)
            flag_name = ("log-" if part == "logging" else "") + key.replace("_", "-")
            assert got == value, f"{where}: {command} reads --{flag_name} as {got!r}, not {value!r}"
        if section == "hook":  # install's path (HookSettings), then the entry it writes, read at container start
            wanted = {w: v for w, v in expected.items() if w[0] == "hook"}
            settings = settings_from_args(parsed)
            assert {w: hook_values(settings)[w] for w in wanted} == wanted, f"{where}: tessera-hook install"
            for stage, (entry,) in hook_entries(settings, "/opt/tessera/current/bin/tessera-hook").items():
                ran = parse_fast(entry["args"][1:])
                assert ran is not None, f"{where}: the {stage} hook entry {entry['args']} needs the full parser"
                assert ran[0] == stage and {w: hook_values(ran[1])[w] for w in wanted} == wanted, \
                    f"{where}: the {stage} hook entry {entry['args']} is read back as other values"
    assert seen, f"{overlay}: no container runs {command}"


def mounted(container: dict, path: str) -> bool:
    return any(os.path.commonpath([m["mountPath"], path]) == m["mountPath"] for m in container.get("volumeMounts", []))


def test_paths_in_flags_are_mounted(rendered):
    by_name = {c["name"]: c for _, c in containers(rendered["default"])}
    plugin, exporter = by_name["device-plugin"], by_name["exporter"]
    for name in ("device-plugin-path", "pod-resources-socket", "mps-pipe-directory", "mps-shm-directory",
                 "mps-log-directory", "overuse-dir", "grant-key-path", "assignment-public-key-path"):
        assert mounted(plugin, flag(plugin["args"], name)), f"device plugin --{name} is not mounted"
    for name in ("pod-resources-socket", "state-dir", "overuse-dir"):
        assert mounted(exporter, flag(exporter["args"], name)), f"exporter --{name} is not mounted"
    # The exporter marks overuse where the plugin reads it; the hook records where the exporter reads.
    assert flag(exporter["args"], "overuse-dir") == flag(plugin["args"], "overuse-dir")
    hook = by_name["install-hook"]
    assert flag(hook["args"], "state-dir") == flag(exporter["args"], "state-dir")
    assert flag(hook["args"], "grant-key-path") == flag(plugin["args"], "grant-key-path")
    assert flag(hook["args"], "mps-user") == flag(plugin["args"], "mps-user") == \
        str(by_name["mps-control-daemon"]["securityContext"]["runAsUser"])
    mps_env = {e["name"]: e.get("value") for e in by_name["mps-control-daemon"]["env"]}
    assert mps_env["CUDA_MPS_PIPE_DIRECTORY"] == flag(plugin["args"], "mps-pipe-directory")
    assert {m["mountPath"] for m in by_name["mps-control-daemon"]["volumeMounts"]} >= {"/dev/shm"}


def test_the_dra_driver_s_paths_are_mounted_and_its_key_and_config_are_the_device_plugin_s(rendered):
    by_name = {c["name"]: c for _, c in containers(rendered["default"])}
    dra, plugin, hook = by_name["dra-plugin"], by_name["device-plugin"], by_name["install-hook"]
    for name in ("plugins-registry-path", "plugin-path", "cdi-dir", "grant-key-path"):
        assert mounted(dra, flag(dra["args"], name)), f"DRA driver --{name} is not mounted"
    # The hook verifies the driver's grants with the key the device plugin's grants use.
    assert flag(dra["args"], "grant-key-path") == flag(hook["args"], "grant-key-path")
    # One config file says which GPUs are the DRA driver's: both daemons read the same one.
    config = {c["name"]: {e["name"]: e.get("value") for e in c["env"]}.get("TESSERA_CONFIG") for c in (dra, plugin)}
    assert config["dra-plugin"] and config["dra-plugin"] == config["device-plugin"], config
    assert mounted(dra, config["dra-plugin"]) and mounted(plugin, config["device-plugin"])
    # MPS shares through DRA use the device plugin's MPS daemon.
    for name in ("mps-pipe-directory", "mps-shm-directory"):
        assert flag(dra["args"], name) == flag(plugin["args"], name)
