"""After an Xid the exporter reads the node inventory at each collection for a while, so the device
plugin's verdict on the GPU reaches ``tessera_gpu_health`` within seconds, not at the next 30 s refresh."""

from __future__ import annotations

import time

from fakenode import samples, scrape, wait_until
from tessera.inventory import GpuHealth, GpuInventory, NodeInventory


def _node_object(node, unhealthy: set[int]) -> dict:
    gpus = tuple(
        GpuInventory(index=g.index, uuid=g.uuid, model=g.model.nvml_name, memory_mib=g.model.memory_mib,
                     sm_count=g.model.sm_count, mode="exclusive",
                     health=GpuHealth(False, "fatal Xid 79", "2026-01-01T00:00:00Z") if g.index in unhealthy
                     else GpuHealth())
        for g in node.description.gpus)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.description.node, "annotations": {
        "tessera.io/gpu-inventory": NodeInventory(node.description.node, gpus).to_json()}}}


def _health(url: str, gpu: str) -> float | None:
    return next((v for labels, v in samples(scrape(url), "tessera_gpu_health") if labels.get("gpu") == gpu), None)


def test_gpu_health_follows_the_plugins_inventory_within_seconds_of_an_xid(fake_node, run_exporter, recording_api):
    node = fake_node()
    recording_api.node = _node_object(node, set())
    url = run_exporter(node, kubeconfig=recording_api.kubeconfig(node.root / "kubeconfig"))
    wait_until(lambda: _health(url, "2") == 1, what="GPU 2 healthy at first")
    node.faults.inject_xid(2, 79)
    time.sleep(0.5)  # the device plugin writes its verdict after the exporter has seen the Xid
    recording_api.node = _node_object(node, {2})
    began = time.monotonic()
    wait_until(lambda: _health(url, "2") == 0, timeout=8, what="GPU 2 unhealthy in the exporter")
    assert time.monotonic() - began < 8          # the inventory is refreshed every 30 s otherwise
    reasons = [labels.get("reason") for labels, v in samples(scrape(url), "tessera_gpu_health") if labels["gpu"] == "2"]
    assert reasons == ["fatal Xid 79"]
    assert _health(url, "1") == 1
