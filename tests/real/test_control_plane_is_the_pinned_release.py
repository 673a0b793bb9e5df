"""The control plane is upstream Kubernetes v1.37.2 and etcd 3.6, version-stamped as a release is
(an unstamped build says v0.0.0-master), and the simulated nodes became Ready through the real node
lifecycle controller: registered with the not-ready taint, which only that controller lifts."""

from __future__ import annotations

import json

from realcluster.binaries import KUBE_VERSION


def test_kubectl_and_the_api_server_say_the_pinned_release(real_cluster):
    versions = json.loads(real_cluster.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["serverVersion"]["gitTreeState"] == "clean"


def test_etcd_is_a_36_release(real_cluster):
    import subprocess
    out = subprocess.run([real_cluster.binaries["etcd"], "--version"], capture_output=True, text=True).stdout
    assert "etcd Version: 3.6." in out, out


def test_nodes_are_ready_and_untainted_through_the_node_lifecycle_controller(real_cluster):
    nodes = {n["metadata"]["name"]: n for n in json.loads(real_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    assert set(nodes) >= {"a100-whole", "h100-mig", "a100-mps", "t4-timeslice"}
    for name, node in nodes.items():
        assert not [t for t in node["spec"].get("taints", []) if t["key"].startswith("node.kubernetes.io/")], name
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
    # each node's heartbeat Lease, renewed by its kubelet
    leases = json.loads(real_cluster.kubectl("-n", "kube-node-lease", "get", "leases", "-o", "json").stdout)["items"]
    assert {lease["spec"]["holderIdentity"] for lease in leases} >= set(nodes)
