"""A real Prometheus scrapes the exporter on a fake MPS node and sees each pod's share of one GPU."""

from __future__ import annotations

from fakenode import wait_until
from tessera.inventory import GpuHealth, GpuInventory, NodeInventory

MIB, GIB = 1 << 20, 1 << 30


def by_pod(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("pod", ""): float(r["value"][1]) for r in result}


def shared_gpu_node(fake_node, recording_api):
    """GPU 0 shared by two pods with different grants, GPU 1 held by one pod, GPU 3 out in the ledger."""
    node = fake_node("h100-80gb-mps.yaml")
    node.offer_mps([0, 1, 2, 3])
    node.start_mps_container("train-a", "main", 0, core=30, mem_gib=8, pid=4001, gpu_pids=[4101])
    node.start_mps_container("train-b", "main", 0, core=50, mem_gib=20, pid=4002, gpu_pids=[4102], nested=True)
    node.start_mps_container("solo", "main", 1, core=100, mem_gib=79, pid=4003, gpu_pids=[4103])
    node.faults.set_processes(0, [(4101, 6000, 25), (4102, 12000, 40)], mps=True)  # (pid, MiB, SM %)
    node.faults.set_processes(1, [(4103, 2000, 90)], mps=True)
    node.faults.set_utilization(0, 40, 10)
    gpus = tuple(
        GpuInventory(index=g.index, uuid=g.uuid, model=g.model.nvml_name, memory_mib=g.model.memory_mib,
                     sm_count=g.model.sm_count, mode="mps",
                     health=GpuHealth(False, "Xid 79: GPU has fallen off the bus", "2026-01-01T00:00:00Z")
                     if g.index == 3 else GpuHealth())
        for g in node.description.gpus)
    recording_api.node = {"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": node.description.node, "annotations": {
                              "tessera.io/gpu-inventory": NodeInventory(node.description.node, gpus).to_json()}}}
    return node


def test_prometheus_sees_each_pods_share_of_one_mps_gpu(fake_node, run_exporter, prometheus, recording_api):
    node = shared_gpu_node(fake_node, recording_api)
    url = run_exporter(node, kubeconfig=recording_api.kubeconfig(node.root / "kubeconfig"))
    prom = prometheus([url.removeprefix("http://")])
    gpu0 = node.uuid(0)
    wait_until(lambda: prom.query('up{job="tessera-exporter"} == 1'), timeout=20, what="a first scrape")

    used = by_pod(prom.query(f'tessera_container_gpu_memory_used_bytes{{UUID="{gpu0}"}}'))
    assert used == {"train-a": 6000 * MIB, "train-b": 12000 * MIB}
    grants = by_pod(prom.query(f'tessera_container_gpu_memory_grant_bytes{{UUID="{gpu0}"}}'))
    assert grants == {"train-a": 8 * GIB, "train-b": 20 * GIB}
    cores = by_pod(prom.query(f'tessera_container_gpu_core_grant_ratio{{UUID="{gpu0}"}}'))
    assert cores == {"train-a": 0.3, "train-b": 0.5}
    assert by_pod(prom.query("tessera_container_over_grant")) == {"train-a": 0, "train-b": 0, "solo": 0}
    util = by_pod(prom.query(f'tessera_container_gpu_utilization_ratio{{UUID="{gpu0}"}}'))
    assert util == {"train-a": 0.25, "train-b": 0.4}  # each pod's processes' SM time, from NVML per process
    assert by_pod(prom.query("tessera_container_gpu_utilization_ratio")) == {"train-a": 0.25, "train-b": 0.4,
                                                                             "solo": 0.9}

    # dcgm-exporter's names and labels; the shared GPU's series names no pod, the held one does
    fb = prom.query("DCGM_FI_DEV_FB_USED")
    shared = next(r for r in fb if r["metric"]["gpu"] == "0")
    assert float(shared["value"][1]) == 18000
    assert {k: shared["metric"].get(k) for k in ("UUID", "device", "modelName", "Hostname", "pci_bus_id", "pod")} == {
        "UUID": gpu0, "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "h100-80gb-mps",
        "pci_bus_id": "00000000:07:00.0", "pod": None}
    held = next(r for r in fb if r["metric"]["gpu"] == "1")
    assert (held["metric"]["pod"], held["metric"]["namespace"], held["metric"]["container"]) == ("solo", "team", "main")
    assert float(held["value"][1]) == 2000
    util = prom.query('DCGM_FI_DEV_GPU_UTIL{gpu="0"}')
    assert [float(r["value"][1]) for r in util] == [40]

    # the ledger: grants, free capacity in the resource's units, mode, and why a GPU is out
    grants_on_0 = {r["metric"]["resource"]: float(r["value"][1])
                   for r in prom.query('tessera_gpu_grants{gpu="0"}')}
    assert grants_on_0 == {"nvidia.com/mps-core": 2, "nvidia.com/mps-memory": 2}
    free_on_0 = {r["metric"]["resource"]: float(r["value"][1]) for r in prom.query('tessera_gpu_free_units{gpu="0"}')}
    assert free_on_0 == {"nvidia.com/mps-core": 20, "nvidia.com/mps-memory": 79 - 28}
    assert [r["metric"]["mode"] for r in prom.query('tessera_gpu_mode{gpu="0"}')] == ["mps"]
    out = prom.query("tessera_gpu_health == 0")
    assert [(r["metric"]["gpu"], r["metric"]["reason"]) for r in out] == [("3", "Xid 79: GPU has fallen off the bus")]
    # what a user sums per pod across the node: no GPU counted twice
    assert by_pod(prom.query("sum by (pod) (tessera_container_gpu_memory_used_bytes)")) == {
        "train-a": 6000 * MIB, "train-b": 12000 * MIB, "solo": 2000 * MIB}
