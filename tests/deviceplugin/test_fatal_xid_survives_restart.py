"""A fatal Xid outlives the plugin: SIGKILL and start again, and the GPU is still out, for the same reason.

NVML forgets Xids, the Node's inventory does not: the restarted plugin reads it and keeps the GPU out
until it is reset (lost from the bus and back) or the admin clears it with the Node annotation
``tessera.io/clear-gpu-health``, which the plugin removes once applied. A transient (quiet-period)
Xid is not carried over.
"""

from __future__ import annotations

import json
import signal

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_INVENTORY
from tessera.fakenvml import FaultInjector

GPU = "nvidia.com/gpu"
CLEAR = "tessera.io/clear-gpu-health"


def health_of(pods, node: str) -> dict[str, dict]:
    """Per GPU UUID, its health in the Node's inventory."""
    text = (pods.node(node)["metadata"].get("annotations") or {}).get(ANNOTATION_INVENTORY)
    return {g["uuid"]: g["health"] for g in json.loads(text)["gpus"]} if text else {}


def test_fatal_xid_stays_out_across_sigkill_until_reset_or_cleared(embedded, eventually):
    cluster, plugins, pods = embedded(NodeSpec(name="t4", model="T4", gpus=4, mode="exclusive"))
    kubelet = cluster.nodes["t4"].kubelet.devices
    faults = FaultInjector(cluster.nodes["t4"].nvml_description)
    uuids = [g.uuid for g in faults.description.gpus]
    eventually(lambda: kubelet.allocatable().get(GPU) == 4, timeout=20, what="4 healthy GPUs")

    faults.inject_xid(1, 79)  # fallen off the bus: fatal
    faults.inject_xid(2, 48)  # double-bit ECC: fatal
    faults.inject_xid(3, 62)  # micro-controller halt: transient (quiet period, 300 s by default)
    eventually(lambda: kubelet.allocatable().get(GPU) == 1, timeout=2, what="GPUs 1, 2 and 3 out")
    before = eventually(lambda: (h := health_of(pods, "t4")) and not h[uuids[3]]["healthy"]
                        and not h[uuids[2]]["healthy"] and not h[uuids[1]]["healthy"] and h,
                        timeout=5, what="the inventory records all three")
    assert before[uuids[1]]["reason"] == "fatal Xid 79" and before[uuids[2]]["reason"] == "fatal Xid 48"

    log = cluster.nodes["t4"].root / "device-plugin.log"
    plugins.kill("t4", signal.SIGKILL)
    offset = len(log.read_text())
    plugins.restart("t4")
    eventually(lambda: '"event": "registered"' in log.read_text()[offset:], timeout=20,
               what="the restarted plugin registered")
    eventually(lambda: kubelet.devices(GPU).get(uuids[3]) == "Healthy", timeout=5,
               what="the transient Xid is not carried over")
    devices = kubelet.devices(GPU)
    assert devices[uuids[1]] == devices[uuids[2]] == "Unhealthy", f"fatal Xids forgotten: {devices}"
    assert devices[uuids[0]] == "Healthy"
    after = eventually(lambda: (h := health_of(pods, "t4")) and h[uuids[3]]["healthy"] and h,
                       timeout=5, what="the restarted plugin's inventory")
    for i in (1, 2):
        assert after[uuids[i]] == before[uuids[i]], "same reason, same since"

    # The admin clears GPU 1 (after resetting it by hand); the plugin removes the annotation.
    cluster.core_v1().patch_node("t4", {"metadata": {"annotations": {CLEAR: uuids[1]}}},
                                 _content_type="application/merge-patch+json", _preload_content=False)
    eventually(lambda: kubelet.devices(GPU).get(uuids[1]) == "Healthy", timeout=5, what="GPU 1 cleared")
    eventually(lambda: CLEAR not in (pods.node("t4")["metadata"].get("annotations") or {}), timeout=5,
               what="the one-shot clear removed")
    assert kubelet.devices(GPU)[uuids[2]] == "Unhealthy", "a clear of GPU 1 leaves GPU 2 out"
    eventually(lambda: health_of(pods, "t4")[uuids[1]]["healthy"], timeout=5, what="inventory says GPU 1 is back")

    # GPU 2 is reset: it drops off the bus and comes back.
    faults.lose_gpu(2)
    eventually(lambda: "lost" in health_of(pods, "t4")[uuids[2]]["reason"], timeout=5, what="GPU 2 seen lost")
    faults.restore_gpu(2)
    eventually(lambda: kubelet.devices(GPU).get(uuids[2]) == "Healthy", timeout=5, what="GPU 2 back after its reset")

    # A fatal Xid after the clear was consumed is not cleared by it, across another restart.
    faults.inject_xid(1, 94)
    eventually(lambda: health_of(pods, "t4").get(uuids[1], {}).get("reason") == "fatal Xid 94", timeout=5,
               what="GPU 1 out again")
    plugins.kill("t4", signal.SIGKILL)
    offset = len(log.read_text())
    plugins.restart("t4")
    eventually(lambda: '"event": "registered"' in log.read_text()[offset:], timeout=20, what="registered again")
    eventually(lambda: kubelet.allocatable().get(GPU) == 3, timeout=5, what="3 healthy GPUs")
    assert kubelet.devices(GPU)[uuids[1]] == "Unhealthy"
