"""Pods on the embedded cluster, each node's plugin in its own process: what a user sees.

An MPS pod's config.json carries exactly its limits on the assigned GPU; a MIG pod and a whole-GPU
pod see only their device; the Node shows the inventory and GFD labels; the Pod carries the ledger;
an Xid takes the GPU out of the Node's allocatable and it comes back.
"""

from __future__ import annotations

import json

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY
from tessera.assignment import read_assignment
from tessera.fakenvml import FaultInjector
from tessera.inventory import NodeInventory

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"
MIG1 = "nvidia.com/mig-1g.10gb"


def running_pod(pods, name, eventually):
    return eventually(lambda: (p := pods.get(name))["status"].get("phase") == "Running" and p,
                      timeout=15, what=f"pod {name} Running")


def config_env(cluster, node, pod) -> dict[str, str]:
    bundle = cluster.nodes[node].kubelet.bundle_path(pod["metadata"]["uid"], "main")
    config = json.loads((bundle / "config.json").read_text())
    return dict(e.split("=", 1) for e in config["process"]["env"])


def allocatable(pods, node, resource) -> int:
    return int(pods.node(node)["status"].get("allocatable", {}).get(resource, "0"))


def test_mps_and_mig_pods(embedded, manifest, eventually):
    cluster, plugins, pods = embedded(
        NodeSpec(name="mps", model="A100-SXM4-80GB", gpus=2, mode="mps"),
        NodeSpec(name="mig", model="H100-SXM5-80GB", gpus=1, mode="mig",
                 mig=("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb")),
        extra=["--xid-quiet-period-s=1"])
    eventually(lambda: allocatable(pods, "mps", CORE) == 200 and allocatable(pods, "mig", MIG1) == 2,
               timeout=20, what="both nodes' resources on the Nodes")

    pods.create(manifest("share", {CORE: 50, MEM: 8}, node="mps"))
    pod = running_pod(pods, "share", eventually)
    env = config_env(cluster, "mps", pod)
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8G"
    uuid = env["NVIDIA_VISIBLE_DEVICES"]
    assert uuid.startswith("GPU-") and env["CUDA_VISIBLE_DEVICES"] == uuid and "," not in uuid

    # the ledger: what was given, and (no extender here) the assignment the plugin wrote itself
    ledger = eventually(lambda: (a := pods.get("share")["metadata"].get("annotations", {})).get(ANNOTATION_ALLOCATED)
                        and ANNOTATION_ASSIGNMENT in a and a, timeout=5, what="ledger annotations on the pod")
    allocated = json.loads(ledger[ANNOTATION_ALLOCATED])["containers"]["main"]
    assert allocated[CORE]["core"] == 50 and allocated[MEM]["memGiB"] == 8 and allocated[CORE]["gpus"] == [uuid]
    doc, signature = read_assignment(ledger[ANNOTATION_ASSIGNMENT])
    assert doc.written_by == "device-plugin" and signature is None and doc.pod_uid == pod["metadata"]["uid"]

    # the node: inventory and labels
    node = pods.node("mps")
    inventory = NodeInventory.from_json(node["metadata"]["annotations"][ANNOTATION_INVENTORY])
    assert [g.mode for g in inventory.gpus] == ["mps", "mps"] and all(g.health.healthy for g in inventory.gpus)
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.count"] == "2" and labels["nvidia.com/gpu.memory"] == "81920"
    assert "A100" in labels["nvidia.com/gpu.product"]

    # MIG: only its instance
    pods.create(manifest("mig-pod", {MIG1: 1}, node="mig"))
    mig_env = config_env(cluster, "mig", running_pod(pods, "mig-pod", eventually))
    mig_uuids = {m.uuid for g in NodeInventory.from_json(
        pods.node("mig")["metadata"]["annotations"][ANNOTATION_INVENTORY]).gpus for m in g.mig if m.profile == "1g.10gb"}
    assert mig_env["NVIDIA_VISIBLE_DEVICES"] in mig_uuids

    # an Xid: the Node's allocatable drops, then comes back after the quiet period
    gpu_index = next(g.index for g in inventory.gpus if g.uuid == uuid)
    FaultInjector(cluster.nodes["mps"].nvml_description).inject_xid(gpu_index, 62)
    eventually(lambda: allocatable(pods, "mps", CORE) == 100, timeout=3, what="Node allocatable drops by one GPU")
    reason = eventually(lambda: [g.health.reason for g in NodeInventory.from_json(
        pods.node("mps")["metadata"]["annotations"][ANNOTATION_INVENTORY]).gpus if not g.health.healthy],
        timeout=3, what="the reason in the node inventory")
    assert reason == ["Xid 62"]
    eventually(lambda: allocatable(pods, "mps", CORE) == 200, timeout=5, what="GPU back after the quiet period")
