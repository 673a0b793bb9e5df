"""What the device plugin does with each kind of node config change: the GPU modes and replicas live, a key
read at start only by a restart in place, a key of the DRA driver's section it does not read by nothing."""

from __future__ import annotations

import dataclasses

import pytest

from deviceplugin.configreload import DevicePluginReload
from tessera.config import TesseraConfig, parse_config
from tessera.config.nodeconfig import ChosenConfig


class Daemon:
    """The daemon's face the reload sees: the modes applied."""

    def __init__(self) -> None:
        self.applied: list = []
        self.rm = self

    def apply_modes(self, cfg) -> None:
        self.applied.append((cfg.default_mode, dict(cfg.gpu_modes), cfg.timeslice_replicas))

    def active_modes(self) -> dict:
        return {}

    def pending_modes(self) -> dict:
        return {}


def reload_with(doc: dict, daemon: Daemon | None = None) -> tuple[Daemon, list[str]]:
    daemon = daemon or Daemon()
    restarts: list[str] = []
    reload = DevicePluginReload(daemon, TesseraConfig(), lambda: restarts.append("restart"))
    reload.apply(parse_config({"version": "v1", **doc}), ChosenConfig("default", "/etc/c.yaml"), "abc")
    return daemon, restarts


@pytest.mark.parametrize("section", [
    {"deviceplugin": {"default_mode": "timeslice"}},
    {"deviceplugin": {"gpu_modes": {1: "mps"}, "timeslice_replicas": 8}},
])
def test_modes_and_replicas_are_applied_live(section):
    daemon, restarts = reload_with(section)
    assert restarts == [] and len(daemon.applied) == 1


@pytest.mark.parametrize("section", [
    {"deviceplugin": {"fatal_xids": [48]}},
    {"deviceplugin": {"default_mode": "mps", "listen": "127.0.0.1:9999"}},   # one live key beside a start-only one
    {"draplugin": {"gpus": [1]}},
    {"logging": {"level": "debug"}},
])
def test_a_key_read_at_start_only_restarts_the_plugin(section):
    daemon, restarts = reload_with(section)
    assert restarts == ["restart"] and daemon.applied == []


def test_the_dra_driver_s_own_keys_leave_the_plugin_alone():
    daemon, restarts = reload_with({"draplugin": {"timeslice_replicas": 2, "cdi_dir": "/run/cdi"}})
    assert restarts == [] and daemon.applied == []


def test_after_a_live_change_the_same_file_again_changes_nothing():
    daemon = Daemon()
    restarts: list[str] = []
    reload = DevicePluginReload(daemon, TesseraConfig(), lambda: restarts.append("restart"))
    config = parse_config({"version": "v1", "deviceplugin": {"timeslice_replicas": 6}})
    reload.apply(config, ChosenConfig("default", None), "a")
    reload.apply(dataclasses.replace(config), ChosenConfig("default", None), "b")
    assert len(daemon.applied) == 1 and restarts == []
