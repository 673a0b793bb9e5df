"""The config file: every key validated at start, errors that name the key and value, flags on top."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from tessera.config import (
    ConfigError,
    DevicePluginConfig,
    TesseraConfig,
    add_common_flags,
    add_section_flags,
    config_from_args,
    load_config,
    parse_config,
)


def write(tmp_path, text: str):
    path = tmp_path / "tessera.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_without_a_file():
    config = load_config(None)
    assert config == TesseraConfig()
    assert config.deviceplugin.device_plugin_path == "/var/lib/kubelet/device-plugins"
    assert config.deviceplugin.fatal_xids == [48, 63, 64, 79, 94, 95]
    assert config.deviceplugin.application_xids == [13, 31, 43, 45, 68, 109]
    assert config.extender.policy == "fragmentation"


def test_a_full_file_reads_back(tmp_path):
    path = write(tmp_path, """
        version: v1
        logging: {level: debug, format: json}
        deviceplugin:
          default_mode: mps
          gpu_modes: {0: mig, "3": timeslice}
          timeslice_replicas: 8
          xid_quiet_period_s: 30
          fatal-xids: [48, 79]
        extender: {policy: binpack}
        hook: {runtime: crio, allow_privileged: true}
        exporter: {interval_s: 2}
    """)
    config = load_config(str(path))
    assert config.logging.level == "debug"
    assert config.deviceplugin.default_mode == "mps"
    assert config.deviceplugin.gpu_modes == {0: "mig", 3: "timeslice"}
    assert config.deviceplugin.timeslice_replicas == 8
    assert config.deviceplugin.xid_quiet_period_s == 30.0
    assert config.deviceplugin.fatal_xids == [48, 79]
    assert config.extender.policy == "binpack"
    assert config.hook.runtime == "crio" and config.hook.allow_privileged is True
    assert config.exporter.interval_s == 2.0


@pytest.mark.parametrize("document, message", [
    ({"deviceplugin": {"default_mode": "shared"}}, "deviceplugin.default_mode: 'shared' is not one of"),
    ({"deviceplugin": {"gpu_modes": {1: "fractional"}}}, "deviceplugin.gpu_modes.1: 'fractional' is not one of"),
    ({"deviceplugin": {"timeslice_replicas": 0}}, "deviceplugin.timeslice_replicas: 0 is below the minimum 1"),
    ({"deviceplugin": {"timeslice_replicas": "4"}}, "deviceplugin.timeslice_replicas: '4' is not a whole number"),
    ({"deviceplugin": {"fatal_xids": [48, "x"]}}, "deviceplugin.fatal_xids[1]: 'x' is not a whole number"),
    ({"deviceplugin": {"device_plugn_path": "/x"}}, "deviceplugin.device_plugn_path: unknown key"),
    ({"extender": {"leader_election": "yes"}}, "extender.leader_election: 'yes' is not true or false"),
    ({"exporter": {"interval_s": 0}}, "exporter.interval_s: 0.0 is below the minimum 0.1"),
    ({"hook": {"runtime": "docker"}}, "hook.runtime: 'docker' is not one of containerd, crio"),
    ({"version": "v2"}, "version: 'v2' is not one of v1"),
    ({"nonsense": {}}, "nonsense: unknown key"),
    ({"extender": "binpack"}, "extender: expected a mapping of settings"),
])
def test_a_bad_key_or_value_is_named(document, message):
    with pytest.raises(ConfigError) as info:
        parse_config(document, source="tessera.yaml")
    assert str(info.value).startswith("tessera.yaml: ")
    assert message in str(info.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = write(tmp_path, "deviceplugin: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def parser_for_device_plugin() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_common_flags(parser)
    add_section_flags(parser, DevicePluginConfig)
    return parser


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, """
        deviceplugin: {default_mode: mps, timeslice_replicas: 8, device_plugin_path: /from/file}
        logging: {level: warning}
    """)
    args = parser_for_device_plugin().parse_args(
        ["--config", str(path), "--timeslice-replicas", "2", "--evict-on-overuse", "--log-level", "debug"])
    config = config_from_args(args, "deviceplugin")
    assert config.deviceplugin.timeslice_replicas == 2          # flag wins
    assert config.deviceplugin.default_mode == "mps"            # file value kept
    assert config.deviceplugin.device_plugin_path == "/from/file"
    assert config.deviceplugin.evict_on_overuse is True
    assert config.logging.level == "debug"


def test_a_bad_flag_value_is_named():
    args = parser_for_device_plugin().parse_args(["--timeslice-replicas", "many"])
    with pytest.raises(ConfigError, match="--timeslice-replicas: 'many' is not a whole number"):
        config_from_args(args, "deviceplugin")
    args = parser_for_device_plugin().parse_args(["--default-mode", "fractional"])
    with pytest.raises(ConfigError, match="--default-mode: 'fractional' is not one of"):
        config_from_args(args, "deviceplugin")


def test_config_check_command(tmp_path):
    good = write(tmp_path, "deviceplugin: {default_mode: mig}\n")
    ok = subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("deviceplugin: {default_mode: mixed}\n")
    refused = subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(bad)],
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert "deviceplugin.default_mode: 'mixed' is not one of" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_config_check_reads_the_typical_shapes(tmp_path):
    good = write(tmp_path, "extender:\n  typical_shapes: ['mps-core=50,cpu=4', 'gpu=2,models=T4']\n")
    ok = subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("extender:\n  typical_shapes: ['mps-core=50', 'mig-1g.10gb=1']\n")
    refused = subprocess.run([sys.executable, "-m", "tessera_cli.main", "config", "check", str(bad)],
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert "extender.typical_shapes[1]: shape 'mig-1g.10gb=1'" in refused.stderr and "Traceback" not in refused.stderr
