"""A real node in the real tier: kubelet v1.37.2 and containerd 2.x, both built from upstream
(scripts/build-kube.sh), registered beside the simulated kubelets, running pods under Debian's runc
from images built here (realcluster.images). Skips, with the reason, where this machine cannot run
one (not root, no runc, no CNI plugins, no node binaries)."""

from __future__ import annotations

import json

from gpunode import NODE, TOLERATION
from realcluster.binaries import KUBE_VERSION


def _node(cluster) -> dict:
    return json.loads(cluster.kubectl("get", "node", NODE, "-o", "json").stdout)


def test_the_real_kubelet_registers_its_node_ready_on_containerd(real_node, real_cluster):
    status = _node(real_cluster)["status"]
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == KUBE_VERSION
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True", conditions


def test_a_pod_runs_under_containerd_on_the_real_kubelet_and_kubectl_logs_reads_it(real_node, real_cluster,
                                                                                     namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "namespace": namespace},
           "spec": {"restartPolicy": "Never", "hostNetwork": True, "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "tolerations": [TOLERATION],
                    "containers": [{"name": "main", "image": "tessera.local/busybox:test",
                                    "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", "echo hello from $POD_NAME; id -u"],
                                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}
    real_cluster.apply([pod])

    def finished():
        got = json.loads(real_cluster.kubectl("get", "pod", "-n", namespace, "hello", "-o", "json").stdout)
        return got if got["status"].get("phase") in ("Succeeded", "Failed") else None

    got = real_cluster.wait_for(finished, timeout_s=120, interval_s=0.5, what="the pod run to its end")
    assert got["status"]["phase"] == "Succeeded", got["status"]
    assert got["spec"]["nodeName"] == NODE
    state = got["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0 and state["containerID"].startswith("containerd://")
    logs = real_cluster.kubectl("logs", "-n", namespace, "hello").stdout.split()
    assert logs == ["hello", "from", "hello", "0"]
