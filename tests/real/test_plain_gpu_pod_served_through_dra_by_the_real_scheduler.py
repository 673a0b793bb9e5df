"""A plain pod asking ``nvidia.com/gpu: 1`` (no ResourceClaim in its spec), applied with kubectl so the
webhook routes it to Tessera's scheduler, is served through Tessera's DRA driver by the real
kube-scheduler 1.37 on a node the admin made a DRA node (label ``tessera.io/dra-driver=true``, a
``gpu.tessera.io`` ResourceSlice, no device-plugin ``nvidia.com/gpu``): deploy/'s DeviceClass
``nvidia-gpu.tessera.io`` maps the resource, kube-scheduler makes and allocates the claim, and
tessera-extender passes the node and binds the pod without an assignment. A second pod beyond the
slice's one GPU stays Pending with kube-scheduler's reason. A device-plugin node keeps serving
``nvidia.com/gpu`` with the extender's signed assignment, claim-free.

No kubelet runs on the DRA node here (one real kubelet per machine, used elsewhere): it is a Node
object kept Ready by this test's heartbeat, with a slice as the driver would publish it. Both are
deleted afterwards.
"""

from __future__ import annotations

import kubernetes
import yaml

from draplugin.devices import PublishedGpu, device_entry
from draplugin.slices import wanted_slice
from extender.dranodes import LABEL_DRA_DRIVER
from heartbeat import Heartbeat
from realtier import events_for, pod, read_pod, wait_for
from tessera import ANNOTATION_ASSIGNMENT
from tessera.dradevices import DRIVER_NAME
from tessera.gpu import GpuInfo

GROUP, VERSION = "resource.k8s.io", "v1"
NODE = "dra-ext-1"
CLASS = "nvidia-gpu.tessera.io"
UUID = "GPU-e7e70000-0000-4000-8000-000000000001"
EXTENDED_CLAIM = "resource.kubernetes.io/extended-resource-claim"


def _dra_node(real_cluster) -> tuple[dict, Heartbeat]:
    core = real_cluster.core_v1()
    core.create_node({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": NODE, "labels": {LABEL_DRA_DRIVER: "true", "kubernetes.io/hostname": NODE}}})
    heartbeat = Heartbeat(core, kubernetes.client.CoordinationV1Api(real_cluster.client()), NODE).start()

    def ready_and_untainted():
        node = core.read_node(NODE)
        return not (node.spec.taints or []) and node

    node = wait_for(ready_and_untainted, f"{NODE} Ready without the not-ready taint", timeout_s=120)
    return {"metadata": {"name": NODE, "uid": node.metadata.uid}}, heartbeat


def _one_gpu_slice(node: dict) -> dict:
    gpu = PublishedGpu("gpu-0", GpuInfo(0, UUID, "NVIDIA A100-SXM4-80GB", minor_number=0, memory_total_mib=81920,
                                        sm_count=108))
    return wanted_slice(node, DRIVER_NAME, [device_entry(gpu, "550.54.15")], 1)


def _apply(real_cluster, manifest: dict) -> None:
    real_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def _extended_claim(objects, namespace: str) -> dict | None:
    claims = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaims")["items"]
    ours = [c for c in claims if (c["metadata"].get("annotations") or {}).get(EXTENDED_CLAIM) == "true"]
    return ours[0] if len(ours) == 1 else None


def test_a_plain_gpu_pod_is_served_through_dra_on_a_dra_node(real_cluster, namespace):
    core = real_cluster.core_v1()
    objects = kubernetes.client.CustomObjectsApi(real_cluster.client())
    mapped = objects.get_cluster_custom_object(GROUP, VERSION, "deviceclasses", CLASS)   # deploy/ applied it
    assert mapped["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    node, heartbeat = _dra_node(real_cluster)
    published = None
    try:
        published = objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", _one_gpu_slice(node))
        on_dra = {LABEL_DRA_DRIVER: "true"}
        _apply(real_cluster, pod("plain", {"nvidia.com/gpu": 1}, namespace=namespace, node_selector=on_dra))

        try:
            served = wait_for(lambda: (p := read_pod(core, namespace, "plain")) and p["spec"].get("nodeName")
                              and (p.get("status") or {}).get("extendedResourceClaimStatus") and p,
                              "pod plain bound with its extended-resource claim", timeout_s=120)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; events {events_for(core, namespace, 'plain')}") from None
        assert served["spec"]["nodeName"] == NODE
        assert served["spec"]["schedulerName"] == "tessera-scheduler"          # the webhook routed it
        assert "resourceClaims" not in served["spec"]                          # the spec is as the user wrote it
        assert ANNOTATION_ASSIGNMENT not in (served["metadata"].get("annotations") or {})
        status = served["status"]["extendedResourceClaimStatus"]
        assert status["requestMappings"] == [{"containerName": "main", "resourceName": "nvidia.com/gpu",
                                              "requestName": "container-0-request-0"}]

        claim = wait_for(lambda: (c := _extended_claim(objects, namespace)) and (c.get("status") or {}).get(
            "allocation") and c, "the extended-resource claim allocated")
        assert claim["metadata"]["name"] == status["resourceClaimName"]
        assert claim["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] == CLASS
        assert claim["status"]["allocation"]["devices"]["results"] == [
            {"request": "container-0-request-0", "driver": DRIVER_NAME, "pool": NODE, "device": "gpu-0"}]
        assert [r["uid"] for r in claim["status"]["reservedFor"]] == [served["metadata"]["uid"]]

        # The slice has one GPU: a second plain pod for DRA nodes waits, and kube-scheduler says why.
        _apply(real_cluster, pod("second", {"nvidia.com/gpu": 1}, namespace=namespace, node_selector=on_dra))
        failed = wait_for(lambda: [e for e in events_for(core, namespace, "second") if e["reason"] == "FailedScheduling"],
                          "FailedScheduling of pod second", timeout_s=120)
        message = failed[-1]["message"]
        assert "cannot allocate all claims" in message, message
        second = read_pod(core, namespace, "second")
        assert second["status"]["phase"] == "Pending" and not second["spec"].get("nodeName")

        # A device-plugin node serves a plain pod as before: the extender's signed assignment, no claim.
        _apply(real_cluster, pod("device-plugin", {"nvidia.com/gpu": 1}, namespace=namespace))
        plugin = wait_for(lambda: (p := read_pod(core, namespace, "device-plugin")) and p["spec"].get("nodeName") and p,
                          "pod device-plugin bound", timeout_s=120)
        assert plugin["spec"]["nodeName"] != NODE
        assert ANNOTATION_ASSIGNMENT in plugin["metadata"]["annotations"]
        assert not (plugin.get("status") or {}).get("extendedResourceClaimStatus")
    finally:
        # No kubelet confirms a deletion on the DRA node: its pods go at once.
        real_cluster.kubectl("delete", "pod", "--all", "-n", namespace, "--grace-period=0", "--force", check=False)
        if published is not None:
            objects.delete_cluster_custom_object(GROUP, VERSION, "resourceslices", published["metadata"]["name"])
        heartbeat.stop()
        core.delete_node(NODE)
        kubernetes.client.CoordinationV1Api(real_cluster.client()).delete_namespaced_lease(NODE, "kube-node-lease")
