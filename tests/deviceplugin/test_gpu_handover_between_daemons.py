"""A GPU moved between the device plugin and the DRA driver by a node config edit is never served by both or
taken from under a claim: the plugin does not take one back while the driver serves it or a claim is
prepared on it, and the driver does not give one up while a prepared claim holds it."""

from __future__ import annotations

import json
import os

from deviceplugin.drashares import dra_gpus_in_use
from draplugin.configreload import DriverReload
from tessera.config import DraPluginConfig, TesseraConfig, parse_config
from tessera.config.nodeconfig import ChosenConfig
from tessera.gpu import GpuInfo

GPUS = [GpuInfo(index=i, uuid=f"GPU-{i}", name="NVIDIA A100-SXM4-80GB", minor_number=9 - i, memory_total_mib=81920,
                sm_count=108, compute_capability=(8, 0)) for i in range(4)]


def write(path, doc) -> str:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def test_the_plugin_sees_what_the_driver_serves_and_what_claims_hold(tmp_path):
    served = write(tmp_path / "served-gpus.json", {"version": 1, "uuids": ["GPU-1"]})
    checkpoint = write(tmp_path / "checkpoint.json", {"version": 1, "claims": {
        "uid-a": {"devices": [{"uuid": "GPU-2"}]},
        "uid-b": {"devices": [{"uuid": "MIG-aaaa", "gpu_index": 3}]}}})   # a MIG device made on GPU 3
    held = dra_gpus_in_use(checkpoint, served, GPUS)
    assert held == {1: "served by the DRA driver", 2: "a claim prepared on it", 3: "a claim prepared on it"}
    assert dra_gpus_in_use(str(tmp_path / "none.json"), str(tmp_path / "none2.json"), GPUS) == {}


def test_an_unreadable_file_holds_every_gpu(tmp_path):
    served = write(tmp_path / "served-gpus.json", "{half")
    assert set(dra_gpus_in_use(str(tmp_path / "none.json"), served, GPUS)) == {0, 1, 2, 3}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)   # never waited on
    assert set(dra_gpus_in_use(str(fifo), str(tmp_path / "none.json"), GPUS)) == {0, 1, 2, 3}


class Driver:
    def __init__(self, prepared: set[int]) -> None:
        self.prepared = prepared

    def prepared_gpus(self) -> set[int]:
        return set(self.prepared)


def test_the_driver_keeps_a_gpu_a_claim_holds_until_it_is_released():
    running = TesseraConfig(draplugin=DraPluginConfig(gpus=[5, 6], node_config_restart_after_s=0))
    edited = parse_config({"version": "v1", "draplugin": {"gpus": [6], "node_config_restart_after_s": 0}})
    driver, restarts = Driver({5}), []
    reload = DriverReload(driver, running, lambda: restarts.append("restart"))
    assert reload.apply(edited, ChosenConfig("default", None), "a") is False and restarts == []
    driver.prepared = set()   # the claim's pod ended, the kubelet unprepared it
    assert reload.apply(edited, ChosenConfig("default", None), "a") is True and restarts == ["restart"]
