"""A plugin killed with SIGKILL mid-run and started again: running pods keep everything.

The kubelet and the API server hold the truth; the restarted plugin rebuilds from them. No grant
is lost (the Pods' ledger is unchanged), the MPS daemon the clients talk to is the same process,
and the next pods get what is left, nothing twice.
"""

from __future__ import annotations

import json
import signal

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ALLOCATED

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def test_sigkill_and_restart_loses_nothing_and_gives_nothing_twice(embedded, manifest, eventually):
    cluster, plugins, pods = embedded(NodeSpec(name="mps", model="A100-SXM4-80GB", gpus=2, mode="mps"))
    eventually(lambda: pods.node("mps")["status"].get("allocatable", {}).get(CORE) == "200", timeout=20,
               what="cores allocatable")

    def run(name: str, core: int, mem: int) -> dict:
        pods.create(manifest(name, {CORE: core, MEM: mem}, node="mps"))
        eventually(lambda: pods.get(name)["status"].get("phase") in ("Running", "Failed"), timeout=10, what=f"{name} admitted")
        assert pods.get(name)["status"]["phase"] == "Running", pods.get(name)["status"]
        doc = eventually(lambda: pods.get(name)["metadata"].get("annotations", {}).get(ANNOTATION_ALLOCATED),
                         timeout=10, what=f"{name} in the ledger")
        return json.loads(doc)["containers"]["main"]

    before = {"a": run("a", 60, 40), "b": run("b", 30, 20)}
    pid_file = cluster.nodes["mps"].root / "mps" / "pipe" / "nvidia-cuda-mps-control.pid"
    daemon_pid = pid_file.read_text()

    log = cluster.nodes["mps"].root / "device-plugin.log"
    plugins.kill("mps", signal.SIGKILL)  # mid-run: no cleanup at all
    offset = len(log.read_text())
    plugins.restart("mps")
    eventually(lambda: log.read_text()[offset:].count('"event": "registered"') == 2, timeout=20,
               what="the restarted plugin registered both resources")
    kubelet = cluster.nodes["mps"].kubelet.devices
    eventually(lambda: kubelet.allocatable() == {CORE: 200, MEM: 160}, timeout=5, what="all devices healthy again")

    after = {"c": run("c", 50, 30), "d": run("d", 10, 8)}
    for name, grant in before.items():
        now = json.loads(pods.get(name)["metadata"]["annotations"][ANNOTATION_ALLOCATED])["containers"]["main"]
        assert now == grant, f"pod {name}'s grant changed across the plugin restart"
    assert pid_file.read_text() == daemon_pid, "the MPS daemon running clients talk to was not touched"

    grants = {**before, **after}
    per_gpu: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for name, grant in grants.items():
        for resource, g in grant.items():
            ids = set(g["deviceIDs"])
            assert not ids & seen, f"{name} got IDs someone else holds"
            seen |= ids
            gpu = g["gpus"][0]
            per_gpu.setdefault(gpu, {}).setdefault(resource, 0)
            per_gpu[gpu][resource] += len(ids)
        assert grant[CORE]["gpus"] == grant[MEM]["gpus"], f"{name}: core and memory on one GPU"
    for gpu, used in per_gpu.items():
        assert used.get(CORE, 0) <= 100 and used.get(MEM, 0) <= 80, f"GPU {gpu} over-committed: {used}"
