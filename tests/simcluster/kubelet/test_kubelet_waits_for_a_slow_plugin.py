"""The simulated kubelet waits for a slow device plugin as the real one does: no deadline on Allocate
(the real kubelet calls it with context.Background()), so a plugin that a busy machine slows past the
former 10 s RPC deadline still gets its pod admitted instead of failing it UnexpectedAdmissionError."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from simcluster.cluster import NodeSpec
from simcluster.kubelet.simkubelet import SimKubelet

RESOURCE = "example.com/gpu"
FORMER_RPC_DEADLINE_S = 10.0
HANG_GUARD_S = 120.0


def test_a_pod_is_admitted_through_an_allocate_slower_than_the_former_deadline(api, node_dir, start_plugin,
                                                                                eventually):
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=2), api.url, Path(node_dir), status_delay_s=0.05)
    kubelet.start()
    try:
        v1 = client.CoreV1Api(client.ApiClient(client.Configuration(host=api.url)))
        start_plugin("GPU-0,GPU-1", "--allocate-delay-s", str(FORMER_RPC_DEADLINE_S + 1.5))
        eventually(lambda: v1.read_node("gpu-node").status.capacity.get(RESOURCE) == "2", HANG_GUARD_S, "capacity")
        v1.create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
            "spec": {"nodeName": "gpu-node", "containers": [{"name": "main", "image": "busybox",
                                                             "resources": {"limits": {RESOURCE: "1"}}}]}})
        def decided():
            status = v1.read_namespaced_pod("slow", "default").status
            return status if status.phase not in (None, "Pending") else None
        status = eventually(decided, HANG_GUARD_S, "the kubelet to admit or refuse the pod")
        assert status.phase == "Running", (status.phase, status.reason, status.message)
    finally:
        kubelet.stop()
