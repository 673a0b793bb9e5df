"""With ``persist_path``, a stopped and restarted API server still holds the cluster."""

from __future__ import annotations

import json

from kubernetes import client

from apiserver_helpers import node, pod
from simcluster.apiserver import ApiServer


def test_objects_and_version_survive_stop_start(tmp_path):
    path = tmp_path / "cluster.json"
    with ApiServer(persist_path=path) as first:
        reg = first.registry
        reg.create("nodes", node("n1"))
        created = reg.create("pods", pod("p"))
        reg.patch("pods", "p", {"metadata": {"labels": {"k": "v"}}}, namespace="default")
        last_rv = first.store.resource_version
    assert json.loads(path.read_text())["resourceVersion"] == last_rv
    with ApiServer(persist_path=path) as second:
        core = client.CoreV1Api(client.ApiClient(client.Configuration(host=second.url)))
        got = core.read_namespaced_pod("p", "default")
        assert got.metadata.uid == created["metadata"]["uid"] and got.metadata.labels == {"k": "v"}
        assert [n.metadata.name for n in core.list_node().items] == ["n1"]
        # The counter goes on from where it stopped, never backwards.
        again = core.create_namespaced_pod("default", pod("q"))
        assert int(again.metadata.resource_version) == last_rv + 1


def test_writes_are_debounced_and_atomic(tmp_path):
    path = tmp_path / "cluster.json"
    with ApiServer(persist_path=path, persist_debounce=0.5) as srv:
        for i in range(300):
            srv.registry.create("configmaps", {"metadata": {"name": f"cm{i}", "namespace": "default"}})
        writes = srv._persister.writes  # noqa: SLF001 - the count is what the test is about
        assert writes < 10
        assert not list(tmp_path.glob("*.tmp"))
    data = json.loads(path.read_text())
    assert len(data["objects"]["configmaps"]) == 300
