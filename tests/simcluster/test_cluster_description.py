"""Cluster descriptions: the shipped default, replicas, clear errors, and the trace's node list."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcluster.cluster import ClusterDescriptionError, load_cluster, load_trace_nodes, parse_cluster

TRACE_NODES = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-gpu-v2023" / \
    "openb_node_list_gpu_node.csv"


def test_default_cluster_has_one_node_per_way_of_sharing():
    cluster = load_cluster()
    modes = {n.mode for n in cluster.nodes}
    assert modes == {"exclusive", "mig", "mps", "timeslice"}
    mig = next(n for n in cluster.nodes if n.mode == "mig")
    assert mig.mig and mig.gpus == 8


def test_replicas_expand_to_numbered_nodes():
    cluster = parse_cluster({"nodes": [{"name": "a", "model": "T4", "gpus": 4, "replicas": 3, "cpu": 8,
                                        "memory_gib": 32, "labels": {"zone": "x"}}]})
    assert [n.name for n in cluster.nodes] == ["a-0", "a-1", "a-2"]
    assert cluster.nodes[0].cpu_milli == 8000 and cluster.nodes[0].memory_mib == 32 * 1024
    assert cluster.node("a-1").labels == {"zone": "x"}


@pytest.mark.parametrize("doc, message", [
    ({}, "non-empty 'nodes' list"),
    ({"nodes": [{"model": "T4"}]}, "a node needs a name"),
    ({"nodes": [{"name": "a"}]}, "a GPU model is required"),
    ({"nodes": [{"name": "a", "model": "T4", "gpus": 0}]}, "0 is not a GPU count"),
    ({"nodes": [{"name": "a", "model": "T4", "mode": "shared"}]}, "'shared' is not one of"),
    ({"nodes": [{"name": "a", "model": "T4", "mig": ["1g.5gb"]}]}, "a MIG layout needs mode: mig"),
    ({"nodes": [{"name": "a", "model": "T4", "colour": "red"}]}, "unknown key(s) colour"),
    ({"nodes": [{"name": "a", "model": "T4"}, {"name": "a", "model": "T4"}]}, "node names repeat: a"),
])
def test_bad_descriptions_name_the_problem(doc, message):
    with pytest.raises(ClusterDescriptionError) as info:
        parse_cluster(doc, "c.yaml")
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ClusterDescriptionError, match="No such file"):
        load_cluster(tmp_path / "nope.yaml")


@pytest.mark.skipif(not TRACE_NODES.exists(), reason=f"trace not found at {TRACE_NODES}")
def test_trace_node_list_loads_every_node_and_gpu():
    cluster = load_trace_nodes(TRACE_NODES)
    assert len(cluster.nodes) == 1213
    assert sum(n.gpus for n in cluster.nodes) == 6212
    assert all(n.mode == "mps" for n in cluster.nodes)
    first = cluster.nodes[0]
    assert (first.name, first.model, first.gpus, first.cpu_milli, first.memory_mib) == \
        ("openb-node-0000", "P100", 2, 64000, 262144)
