"""A 1,213-node cluster fits and answers quickly; deletion follows the configured and real rules."""

from __future__ import annotations

import time

import pytest

from apiserver_helpers import http, node, pod
from simcluster.apiserver import ApiError, ApiServer


def test_1213_nodes_and_thousands_of_pods(server):
    reg = server.registry
    for i in range(1213):
        reg.create("nodes", node(f"n{i:04d}"))
    for i in range(3000):
        reg.create("pods", pod(f"p{i:04d}", nodeName=f"n{i % 1213:04d}"))
    start = time.monotonic()
    code, nodes = http(server, "GET", "/api/v1/nodes")
    assert code == 200 and len(nodes["items"]) == 1213
    code, on_node = http(server, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn0005")
    assert sorted(p["metadata"]["name"] for p in on_node["items"]) == ["p0005", "p1218", "p2431"]
    assert time.monotonic() - start < 2.0
    # The node index follows deletes.
    reg.delete("pods", "p1218", "default", grace_period_seconds=0)
    code, on_node = http(server, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn0005")
    assert [p["metadata"]["name"] for p in on_node["items"]] == ["p0005", "p2431"]


def test_graceful_deletion_can_be_switched_off():
    with ApiServer(graceful_pod_deletion=False) as srv:
        srv.registry.create("pods", pod("p", nodeName="n1"))
        srv.registry.delete("pods", "p", "default")
        with pytest.raises(ApiError) as err:
            srv.registry.get("pods", "p", "default")
        assert err.value.code == 404


def test_shorter_grace_period_shortens_termination(server):
    reg = server.registry
    reg.create("pods", pod("p", nodeName="n1"))
    first = reg.delete("pods", "p", "default")
    second = reg.delete("pods", "p", "default", grace_period_seconds=5)
    assert first["metadata"]["deletionGracePeriodSeconds"] == 30
    assert second["metadata"]["deletionGracePeriodSeconds"] == 5
    assert second["metadata"]["deletionTimestamp"] <= first["metadata"]["deletionTimestamp"]


def test_finalizers_hold_an_object_until_removed(server):
    reg = server.registry
    reg.create("configmaps", {"metadata": {"name": "held", "namespace": "default", "finalizers": ["tessera.io/x"]}})
    held = reg.delete("configmaps", "held", "default")
    assert held["metadata"]["deletionTimestamp"]
    reg.patch("configmaps", "held", {"metadata": {"finalizers": None}}, "application/merge-patch+json",
              namespace="default")
    with pytest.raises(ApiError):
        reg.get("configmaps", "held", "default")


def test_deleting_a_namespace_removes_its_objects(server):
    reg = server.registry
    reg.create("namespaces", {"metadata": {"name": "team"}})
    reg.create("pods", pod("p", "team"))
    reg.create("configmaps", {"metadata": {"name": "c", "namespace": "team"}})
    reg.delete("namespaces", "team")
    assert reg.list("pods", "team") == [] and reg.list("configmaps", "team") == []
    assert "team" not in {n["metadata"]["name"] for n in reg.list("namespaces")}


def test_table_answer_when_asked(server):
    server.registry.create("pods", pod("p"))
    code, t = http(server, "GET", "/api/v1/namespaces/default/pods",
                   headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert t["rows"][0]["cells"][:3] == ["p", "0/1", "Pending"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    code, plain = http(server, "GET", "/api/v1/namespaces/default/pods")
    assert plain["kind"] == "PodList"
