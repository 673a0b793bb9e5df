"""The driver's start on a fake GPU node: NVML's GPUs are read once, and that one read both picks the
published GPUs and gives their first health (a GPU unreadable at start is published tainted)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from draharness import DRIVER, NODE
from draplugin import daemon as daemon_module
from tessera import fakenvml
from tessera.config import DraPluginConfig
from tessera.fakenvml.control import FaultInjector
from tessera.nvml import Nvml

sys.path.insert(0, str(Path(__file__).parents[1] / "tessera"))
from fakegpu import write_node  # noqa: E402


class QuietPublisher:
    """The ResourceSlice publisher, without an API server."""

    def __init__(self, client, node, driver, devices, counter_sets) -> None:
        self.published = threading.Event()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poke(self) -> None:
        pass


def test_start_reads_the_gpus_once_and_taints_one_unreadable_then(tmp_path, monkeypatch):
    path = write_node(tmp_path, {"node": NODE, "gpus": [{"model": "A100-SXM4-40GB", "count": 1, "mode": "mig"},
                                                        {"model": "A100-SXM4-40GB", "count": 1}]})
    fakenvml.install(path)
    FaultInjector(path).lose_gpu(1)
    starter = threading.current_thread()
    reads = []
    read_gpus = Nvml.read_gpus

    def counted(nvml):
        if threading.current_thread() is starter:   # the health thread reads on its own schedule
            reads.append(1)
        return read_gpus(nvml)

    monkeypatch.setattr(Nvml, "read_gpus", counted)
    monkeypatch.setattr(daemon_module, "SlicePublisher", QuietPublisher)
    config = DraPluginConfig(gpus=[0, 1], gpu_modes={0: "mig"}, driver_name=DRIVER, node_name=NODE,
                             plugins_registry_path=str(tmp_path / "registry"), plugin_path=str(tmp_path / "plugin"),
                             cdi_dir=str(tmp_path / "cdi"), device_root=str(tmp_path / "host"),
                             grant_key_path=str(tmp_path / "key" / "node-grant.key"), listen="127.0.0.1:0")
    driver = daemon_module.DraPluginDaemon(config, client=None)
    try:
        driver.start()
        assert len(reads) == 1
        assert driver.health.taints(1) and driver.health.taints(0) == []
    finally:
        driver.stop()
        fakenvml.uninstall()
