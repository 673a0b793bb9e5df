"""The real kube-scheduler's FailedScheduling event carries the extender's per-node reason (a share
that fits the node's totals and no single GPU), and preemption goes through the extender's ``preempt``
verb: kube-scheduler proposes the fewest victims by the node's totals, the extender keeps the node
only if evicting them frees one GPU the pod fits, and exactly that victim is evicted."""

from __future__ import annotations

import json
import time

from realtier import events_for, pod, read_pod, wait_for, wait_running
from tessera import ANNOTATION_ALLOCATED

MPS_NODE = "a100-mps"
ASK = {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 8}
ON_MPS_NODE = {"kubernetes.io/hostname": MPS_NODE}


def fill(cluster, namespace: str, cores: list[int]) -> dict[str, str]:
    """One pod per GPU of the MPS node (eight), the i-th asking ``cores[i]`` mps-core and 8 GiB; their
    GPU UUIDs by pod name."""
    core = cluster.core_v1()
    names = [f"filler-{i}" for i in range(8)]
    cluster.apply([pod(name, {"nvidia.com/mps-core": c, "nvidia.com/mps-memory": 8}, namespace=namespace,
                       node_selector=ON_MPS_NODE) for name, c in zip(names, cores)])
    for name in names:
        wait_running(core, namespace, name)
    gpus = {name: gpu_of(core, namespace, name) for name in names}
    assert len(set(gpus.values())) == 8, gpus
    return gpus


def gpu_of(core, namespace: str, name: str) -> str:
    """The GPU the device plugin gave the pod, from its ledger."""
    allocated = wait_for(lambda: (read_pod(core, namespace, name) or {}).get("metadata", {}).get(
        "annotations", {}).get(ANNOTATION_ALLOCATED), f"the ledger of pod {name}")
    return json.loads(allocated)["containers"]["main"]["nvidia.com/mps-core"]["gpus"][0]


def test_failed_scheduling_event_carries_the_extenders_per_gpu_reason(real_cluster, namespace):
    core = real_cluster.core_v1()
    # 60 to 67 of each GPU's 100 mps-core: 292 stay free on the node, at most 40 on any one GPU.
    # (Sizes apart, so the per-shape rule holds none of them back.)
    fill(real_cluster, namespace, list(range(60, 68)))
    real_cluster.apply([pod("half", ASK, namespace=namespace, node_selector=ON_MPS_NODE)])
    failed = wait_for(lambda: [e for e in events_for(core, namespace, "half") if e["reason"] == "FailedScheduling"],
                      "a FailedScheduling event for pod half")
    message = failed[-1]["message"]
    nodes = len(core.list_node().items)   # the simulated four, and the real node where a test started it
    assert message.startswith(f"0/{nodes} nodes are available: ")
    assert "1 node(s) didn't have a GPU with 50 mps-core and 8 GiB free" in message, message
    assert read_pod(core, namespace, "half")["status"].get("phase") == "Pending"


def test_preemption_evicts_one_victim_whose_gpu_the_pod_then_gets(real_cluster, namespace):
    core = real_cluster.core_v1()
    # Every GPU full. All of one size: the per-shape rule holds each back until the one before is
    # allocated, and kube-scheduler retries them after its back-off (the extender answers an error).
    gpus = fill(real_cluster, namespace, [100] * 8)
    high = f"{namespace}-high"
    real_cluster.apply([{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                         "metadata": {"name": high}, "value": 1000}])
    try:
        real_cluster.apply([pod("urgent", ASK, namespace=namespace, node_selector=ON_MPS_NODE, priority_class=high)])
        urgent = wait_running(core, namespace, "urgent")
    finally:
        real_cluster.kubectl("delete", "priorityclass", high, check=False)
    evicted = [name for name in gpus if (p := read_pod(core, namespace, name)) is None
               or p["metadata"].get("deletionTimestamp")]
    assert len(evicted) == 1, f"evicted {evicted}"
    assert gpu_of(core, namespace, "urgent") == gpus[evicted[0]]
    assert urgent["spec"]["nodeName"] == MPS_NODE
    assert any(e["reason"] == "Preempted" for e in events_for(core, namespace, evicted[0])), \
        events_for(core, namespace, evicted[0])
    log = (real_cluster.workdir / "logs" / "tessera-extender.log").read_text()
    assert '"event": "preempt_answered"' in log and '"pod": "' + namespace + '/urgent"' in log


def test_preemption_is_refused_where_the_victims_would_free_no_gpu_the_pod_fits(real_cluster, namespace):
    """kube-scheduler proposes, by the node's totals, one small pod as the victim; evicting it would
    leave its GPU with at most 29 mps-core free, so the extender's ``preempt`` drops the node and
    nothing is evicted: a pod that cannot use what a preemption frees is not worth a victim."""
    core = real_cluster.core_v1()
    # One big pod per GPU (71..78 mps-core), then one small pod beside each (17..24): 760 of 800 used.
    # Sizes all apart (the per-shape rule holds none back); the bigs start first, so kube-scheduler,
    # which gives back the most important (earliest started) pods first, proposes one small one.
    bigs = [f"big-{i}" for i in range(8)]
    real_cluster.apply([pod(name, {"nvidia.com/mps-core": 71 + i, "nvidia.com/mps-memory": 40 + i},
                            namespace=namespace, node_selector=ON_MPS_NODE) for i, name in enumerate(bigs)])
    for name in bigs:
        wait_running(core, namespace, name)
    time.sleep(1.1)   # pod startTime has whole seconds: the small ones must start later than every big one
    smalls = [f"small-{i}" for i in range(8)]
    real_cluster.apply([pod(name, {"nvidia.com/mps-core": 24 - i, "nvidia.com/mps-memory": 11 - i},
                            namespace=namespace, node_selector=ON_MPS_NODE) for i, name in enumerate(smalls)])
    for name in smalls:
        wait_running(core, namespace, name)

    high = f"{namespace}-high"
    real_cluster.apply([{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                         "metadata": {"name": high}, "value": 1000}])
    try:
        real_cluster.apply([pod("urgent", ASK, namespace=namespace, node_selector=ON_MPS_NODE, priority_class=high)])
        log = real_cluster.workdir / "logs" / "tessera-extender.log"
        answered = wait_for(lambda: [json.loads(line) for line in log.read_text().splitlines()
                                     if '"preempt_answered"' in line and f'"{namespace}/urgent"' in line],
                            "the extender's preempt answer for pod urgent")
        failed = wait_for(lambda: [e for e in events_for(core, namespace, "urgent")
                                   if e["reason"] == "FailedScheduling" and "preemption:" in e["message"]],
                          "a FailedScheduling event after the preemption attempt")
    finally:
        real_cluster.kubectl("delete", "priorityclass", high, check=False)
    assert answered[0]["proposed"] == 1 and answered[0]["kept"] == 0, answered
    assert "Insufficient nvidia.com/mps-core" in failed[-1]["message"], failed[-1]
    left = [n for n in bigs + smalls if (p := read_pod(core, namespace, n)) and not p["metadata"].get("deletionTimestamp")]
    assert len(left) == 16
    assert read_pod(core, namespace, "urgent")["status"].get("phase") == "Pending"
