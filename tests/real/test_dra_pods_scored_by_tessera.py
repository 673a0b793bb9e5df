"""Pods whose GPUs come from ResourceClaims of Tessera's DeviceClasses are placed by the real
kube-scheduler 1.37's DRA allocator under Tessera's node scores: applied with kubectl, the webhook routes
them to tessera-scheduler (it knows their claim templates from its watch), and deploy/'s second extender
entry (``prioritize-dra``) scores the nodes by the fragmentation policy over what the ResourceSlices
publish and the allocated claims hold.

Two DRA nodes of one 80 GB MPS GPU each (Node objects kept Ready by this test, slices as the driver
publishes them; no kubelet runs here). A 70-core share lands on one of them, X, and takes half its CPU.
A 30-core share then goes to X, where it fills the GPU, although kube-scheduler's own scoring prefers the
other node (LeastAllocated CPU, BalancedAllocation): without Tessera's scores it lands there. A third
share, with X's GPU full, goes to the other node.
"""

from __future__ import annotations

import kubernetes

from draplugin.devices import PublishedGpu, device_entry
from draplugin.slices import wanted_slice
from extender.dranodes import LABEL_DRA_DRIVER
from heartbeat import Heartbeat
from realtier import GPU_IMAGE, events_for, read_pod, wait_for
from tessera.dradevices import DRIVER_NAME, MODE_MPS
from tessera.gpu import GpuInfo

GROUP, VERSION = "resource.k8s.io", "v1"
NODES = ("dra-score-a", "dra-score-b")
LABEL_TEST = "tessera.io/test-group"
MPS_CLASS = f"mps.{DRIVER_NAME}"


def _template(name: str, namespace: str, cores: int, gib: int) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                "deviceClassName": MPS_CLASS, "capacity": {"requests": {"cores": str(cores), "memory": f"{gib}Gi"}}}}]}}}}


def _claim_pod(name: str, namespace: str, template: str, cpu: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "nodeSelector": {LABEL_TEST: "dra-score"},
                     "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": template}],
                     "containers": [{"name": "main", "image": GPU_IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": cpu}, "claims": [{"name": "gpu"}]}}]}}


def _slice(node: dict, index: int) -> dict:
    gpu = PublishedGpu("gpu-0", GpuInfo(0, f"GPU-5c0e0000-0000-4000-8000-00000000000{index}", "NVIDIA A100-SXM4-80GB",
                                        minor_number=0, memory_total_mib=81920, sm_count=108), MODE_MPS)
    return wanted_slice(node, DRIVER_NAME, [device_entry(gpu, "550.54.15")], 1)


def _bound(core, namespace: str, name: str) -> dict:
    try:
        return wait_for(lambda: (p := read_pod(core, namespace, name)) and p["spec"].get("nodeName") and p,
                        f"pod {name} bound", timeout_s=120)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; events {events_for(core, namespace, name)}") from None


def test_claim_pods_go_where_their_share_fills_a_gpu(real_cluster, namespace):
    core = real_cluster.core_v1()
    objects = kubernetes.client.CustomObjectsApi(real_cluster.client())
    leases = kubernetes.client.CoordinationV1Api(real_cluster.client())
    heartbeats, slices = [], []
    # The namespace opts in (deploy/'s webhook entry selects it); the extender runs with --dra-scoring
    # (tests/real/conftest.py).
    real_cluster.kubectl("label", "namespace", namespace, "tessera.io/dra-scoring=on")
    try:
        for i, name in enumerate(NODES):
            core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
                LABEL_DRA_DRIVER: "true", LABEL_TEST: "dra-score", "kubernetes.io/hostname": name}}})
            heartbeats.append(Heartbeat(core, leases, name, cpu="8").start())
            node = wait_for(lambda: (n := core.read_node(name)) and not (n.spec.taints or []) and n,
                            f"{name} Ready without the not-ready taint", timeout_s=120)
            slices.append(objects.create_cluster_custom_object(
                GROUP, VERSION, "resourceslices", _slice({"metadata": {"name": name, "uid": node.metadata.uid}}, i)))
        for template in (_template("big", namespace, 70, 56), _template("small", namespace, 30, 24)):
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaimtemplates", template)

        real_cluster.kubectl("apply", "-f", "-", input=_yaml(_claim_pod("holder", namespace, "big", cpu="4")))
        holder = _bound(core, namespace, "holder")
        assert holder["spec"]["schedulerName"] == "tessera-scheduler"     # the webhook routed a claim pod
        full = holder["spec"]["nodeName"]
        other = next(n for n in NODES if n != full)

        real_cluster.kubectl("apply", "-f", "-", input=_yaml(_claim_pod("filler", namespace, "small", cpu="1")))
        filler = _bound(core, namespace, "filler")
        assert filler["spec"]["nodeName"] == full, \
            f"the 30-core share went to {filler['spec']['nodeName']}, not to {full} where it fills the GPU"

        real_cluster.kubectl("apply", "-f", "-", input=_yaml(_claim_pod("third", namespace, "small", cpu="1")))
        assert _bound(core, namespace, "third")["spec"]["nodeName"] == other   # X's GPU is full
        claims = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaims")["items"]
        consumed = sorted((c["status"]["allocation"]["devices"]["results"][0]["pool"],
                           c["status"]["allocation"]["devices"]["results"][0]["consumedCapacity"]["cores"])
                          for c in claims)
        assert consumed == sorted([(full, "70"), (full, "30"), (other, "30")]), consumed
    finally:
        # No kubelet confirms a deletion on these nodes: their pods go at once.
        real_cluster.kubectl("delete", "pod", "--all", "-n", namespace, "--grace-period=0", "--force", check=False)
        for one in slices:
            objects.delete_cluster_custom_object(GROUP, VERSION, "resourceslices", one["metadata"]["name"])
        for heartbeat in heartbeats:
            heartbeat.stop()
            core.delete_node(heartbeat.name)
            leases.delete_namespaced_lease(heartbeat.name, "kube-node-lease")


def _yaml(manifest: dict) -> str:
    import yaml
    return yaml.safe_dump(manifest)
