"""What the device plugin does with each kind of node config change: the GPU modes and replicas live, a key
read at start only by a restart in place, a key of the DRA driver's section it does not read by nothing."""

from __future__ import annotations

import dataclasses

import pytest

from deviceplugin.configreload import DevicePluginReload
from tessera.config import DevicePluginConfig, TesseraConfig, parse_config
from tessera.config.nodeconfig import ChosenConfig


class Daemon:
    """The daemon's face the reload sees: the modes applied, and what a restart would take from under grants."""

    def __init__(self, blockers: list[str] | None = None) -> None:
        self.applied: list = []
        self.blockers = list(blockers or [])
        self.rm = self

    def restart_blockers(self, config) -> list[str]:
        return list(self.blockers)

    def apply_modes(self, cfg) -> None:
        self.applied.append((cfg.default_mode, dict(cfg.gpu_modes), cfg.timeslice_replicas))

    def active_modes(self) -> dict:
        return {}

    def pending_modes(self) -> dict:
        return {}


RUNNING = TesseraConfig(deviceplugin=DevicePluginConfig(node_config_restart_after_s=0))


def new_config(doc: dict) -> TesseraConfig:
    """``doc`` as a config file over the running one's restart spacing (so only ``doc``'s keys differ)."""
    plugin = {"node_config_restart_after_s": 0, **doc.get("deviceplugin", {})}
    return parse_config({"version": "v1", **doc, "deviceplugin": plugin})


def reload_with(doc: dict, daemon: Daemon | None = None, running: TesseraConfig = RUNNING
                ) -> tuple[Daemon, list[str], bool]:
    daemon = daemon or Daemon()
    restarts: list[str] = []
    reload = DevicePluginReload(daemon, running, lambda: restarts.append("restart"))
    taken = reload.apply(new_config(doc), ChosenConfig("default", "/etc/c.yaml"), "abc")
    return daemon, restarts, taken


@pytest.mark.parametrize("section", [
    {"deviceplugin": {"default_mode": "timeslice"}},
    {"deviceplugin": {"gpu_modes": {1: "mps"}, "timeslice_replicas": 8}},
])
def test_modes_and_replicas_are_applied_live(section):
    daemon, restarts, taken = reload_with(section)
    assert restarts == [] and len(daemon.applied) == 1 and taken


@pytest.mark.parametrize("section", [
    {"deviceplugin": {"fatal_xids": [48]}},
    {"deviceplugin": {"default_mode": "mps", "listen": "127.0.0.1:9999"}},   # one live key beside a start-only one
    {"draplugin": {"gpus": [1]}},
    {"logging": {"level": "debug"}},
])
def test_a_key_read_at_start_only_restarts_the_plugin(section):
    daemon, restarts, taken = reload_with(section)
    assert restarts == ["restart"] and daemon.applied == [] and taken


def test_the_dra_driver_s_own_keys_leave_the_plugin_alone():
    daemon, restarts, taken = reload_with({"draplugin": {"timeslice_replicas": 2, "cdi_dir": "/run/cdi"}})
    assert restarts == [] and daemon.applied == [] and taken


def test_after_a_live_change_the_same_file_again_changes_nothing():
    daemon = Daemon()
    restarts: list[str] = []
    reload = DevicePluginReload(daemon, RUNNING, lambda: restarts.append("restart"))
    config = new_config({"deviceplugin": {"timeslice_replicas": 6}})
    reload.apply(config, ChosenConfig("default", None), "a")
    reload.apply(dataclasses.replace(config), ChosenConfig("default", None), "b")
    assert len(daemon.applied) == 1 and restarts == []


def test_a_restart_that_would_move_a_gpu_under_grants_waits_and_is_offered_again():
    daemon = Daemon(blockers=["GPU 0 holds grants and would go to the DRA driver"])
    _, restarts, taken = reload_with({"draplugin": {"gpus": [0]}}, daemon)
    assert not taken and restarts == [], "not taken: the watch offers the same file again"
    daemon.blockers = []
    _, restarts, taken = reload_with({"draplugin": {"gpus": [0]}}, daemon)
    assert taken and restarts == ["restart"]


def test_a_restart_waits_until_the_plugin_has_run_its_minimum_time():
    running = TesseraConfig(deviceplugin=DevicePluginConfig(node_config_restart_after_s=3600))
    doc = {"deviceplugin": {"fatal_xids": [48], "node_config_restart_after_s": 3600}}
    _, restarts, taken = reload_with(doc, running=running)
    assert not taken and restarts == []
