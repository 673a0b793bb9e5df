"""Every Tessera container's arguments in deploy/ are flags its daemon's real parser accepts, and the
host paths those flags name are mounted into that container."""

from __future__ import annotations

import os

import pytest

from manifests import containers, flag

from deviceplugin.main import build_parser as device_plugin_parser
from exporter.main import build_parser as exporter_parser
from extender.main import build_parser as extender_parser
from hook.main import build_parser as hook_parser

# command -> (parser, what the command puts before its arguments)
ENTRY_POINTS = {
    "tessera-extender": (extender_parser, []),
    "tessera-device-plugin": (device_plugin_parser, []),
    "tessera-exporter": (exporter_parser, []),
    # deploy/node/install-hook.sh ends in: tessera-hook install --root ... --hook-path ... "$@"
    "tessera-install-hook": (hook_parser, ["install", "--root", "/host", "--hook-path", "/opt/tessera/current/bin/x"]),
}


def tessera_containers(objects):
    return [(w, c) for w, c in containers(objects) if c.get("command", [""])[0] in ENTRY_POINTS]


def test_every_tessera_command_is_one_of_the_entry_points(rendered):
    commands = {c["command"][0] for _, c in tessera_containers(rendered["default"])}
    assert commands == set(ENTRY_POINTS)


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_arguments_parse_with_the_daemons_parser(rendered, command):
    make_parser, prefix = ENTRY_POINTS[command]
    for workload, container in tessera_containers(rendered["default"]):
        if container["command"][0] != command:
            continue
        args = container["command"][1:] + container.get("args", [])
        parser = make_parser()
        parser.exit_on_error = False
        try:
            parsed, unknown = parser.parse_known_args(prefix + args)
        except SystemExit:
            pytest.fail(f"{workload}/{container['name']}: {command} refuses {args}")
        assert not unknown, f"{workload}/{container['name']}: {command} has no flags {unknown}"
        assert parsed is not None


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
