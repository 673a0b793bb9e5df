"""What the DRA driver says while a node config edit waits to restart it: ``node_config_restart_waiting``
once per file and reasons (the watch offers the same file every few seconds), with why it waits."""

from __future__ import annotations

from structlog.testing import capture_logs

from draplugin.configreload import DriverReload
from tessera.config import DraPluginConfig, TesseraConfig, parse_config
from tessera.config.nodeconfig import ChosenConfig


class Driver:
    def __init__(self, prepared: set[int]) -> None:
        self.prepared = prepared

    def prepared_gpus(self) -> set[int]:
        return set(self.prepared)


def waiting_events(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "node_config_restart_waiting"]


def test_the_wait_is_said_once_per_file_and_reasons():
    running = TesseraConfig(draplugin=DraPluginConfig(gpus=[5, 6], node_config_restart_after_s=0))
    edited = parse_config({"version": "v1", "draplugin": {"gpus": [6], "node_config_restart_after_s": 0}})
    driver = Driver({5})
    reload = DriverReload(driver, running, lambda: None)
    with capture_logs() as logs:
        for _ in range(3):   # three looks of the watch at the same file
            assert reload.apply(edited, ChosenConfig("default", None), "aaa") is False
    said = waiting_events(logs)
    assert len(said) == 1
    assert said[0]["waiting_for"] == ["GPU 5 leaves draplugin.gpus but a prepared claim holds it"]
    assert {k: said[0][k] for k in ("name", "sha256", "keys")} == {
        "name": "default", "sha256": "aaa", "keys": ["draplugin.gpus"]}
    with capture_logs() as logs:
        reload.apply(edited, ChosenConfig("default", None), "bbb")   # another text of the file
        driver.prepared = {5, 6}
        reload.apply(edited, ChosenConfig("default", None), "bbb")   # same text, same reasons: GPU 6 stays
    assert len(waiting_events(logs)) == 1


def test_a_driver_that_just_started_waits_its_minimum_run():
    running = TesseraConfig(draplugin=DraPluginConfig(node_config_restart_after_s=3600))
    edited = parse_config({"version": "v1", "draplugin": {"node_config_restart_after_s": 3600, "cdi_dir": "/x"}})
    restarts: list[str] = []
    reload = DriverReload(Driver(set()), running, lambda: restarts.append("restart"))
    with capture_logs() as logs:
        assert reload.apply(edited, ChosenConfig("default", None), "aaa") is False
    (reason,) = waiting_events(logs)[0]["waiting_for"]
    assert reason.startswith("the driver started ") and reason.endswith(
        "it restarts at most once per 3600 s (node_config_restart_after_s)")
    assert restarts == []
