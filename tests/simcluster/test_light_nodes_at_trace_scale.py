"""Light mode: the trace's 1,213 nodes and thousands of pods in one process, listed by the real client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from simcluster.cluster import load_cluster, load_trace_nodes
from simcluster.lightnodes import light_inventory, node_resources
from simcluster import running
from tessera.inventory import NodeInventory

TRACE_NODES = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-gpu-v2023" / \
    "openb_node_list_gpu_node.csv"


def test_light_nodes_advertise_what_the_device_plugin_would():
    cluster = load_cluster()
    by_name = {n.name: node_resources(light_inventory(n)) for n in cluster.nodes}
    assert by_name["a100-whole"] == {"nvidia.com/gpu": 8}
    assert by_name["a100-mps"] == {"nvidia.com/mps-core": 800, "nvidia.com/mps-memory": 640}
    assert by_name["t4-timeslice"] == {"nvidia.com/gpu.shared": 16}
    assert by_name["h100-mig"] == {"nvidia.com/mig-3g.40gb": 8, "nvidia.com/mig-2g.20gb": 8,
                                   "nvidia.com/mig-1g.10gb": 16}


@pytest.mark.skipif(not TRACE_NODES.exists(), reason=f"trace not found at {TRACE_NODES}")
def test_trace_cluster_and_thousands_of_pods_in_one_process():
    description = load_trace_nodes(TRACE_NODES)
    began = time.monotonic()
    with running(description, light=True) as cluster:
        core = cluster.core_v1()
        nodes = core.list_node(_preload_content=False)
        items = json.loads(nodes.data)["items"]
        assert len(items) == 1213
        gpus = sum(len(NodeInventory.from_json(n["metadata"]["annotations"]["tessera.io/gpu-inventory"]).gpus)
                   for n in items)
        assert gpus == 6212
        assert sum(int(n["status"]["capacity"].get("nvidia.com/mps-core", 0)) for n in items) == 621200
        for i in range(3000):
            cluster.api.registry.create("pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"task-{i}", "namespace": "default"},
                "spec": {"containers": [{"name": "main", "image": "x",
                                         "resources": {"limits": {"nvidia.com/mps-core": "50"}}}]}},
                namespace="default")
        listed = core.list_namespaced_pod("default", limit=500)
        assert len(listed.items) == 500 and listed.metadata._continue
        total = json.loads(core.list_namespaced_pod("default", _preload_content=False).data)["items"]
        assert len(total) == 3000
    assert time.monotonic() - began < 60
