"""evict_on_overuse: a pod the exporter marks over its GPU memory grant is evicted once, through the API."""

from __future__ import annotations

import json

from deviceplugin.apiclient import connect
from deviceplugin.eviction import OveruseEvictor
from simcluster.apiserver import ApiServer


def bound_pod(api: ApiServer, name: str, node: str) -> dict:
    api.registry.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": name, "namespace": "default"},
                                 "spec": {"containers": [{"name": "main", "image": "x"}]}}, namespace="default")
    api.registry.bind("default", name, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    return api.registry.get("pods", name, "default")


def test_marked_pod_is_evicted_once_and_others_are_left_alone(tmp_path):
    with ApiServer(host="127.0.0.1", port=0) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        greedy = bound_pod(api, "greedy", "gpu-1")
        bound_pod(api, "modest", "gpu-1")
        switch = tmp_path / "overuse"
        switch.mkdir()
        mark = {"v": 1, "namespace": "default", "pod": "greedy", "pod_uid": greedy["metadata"]["uid"],
                "container": "main", "gpu_uuid": "GPU-1", "used_bytes": 12 << 30, "grant_bytes": 8 << 30}
        (switch / "default_greedy_main_GPU-1.json").write_text(json.dumps(mark))
        (switch / "default_broken_main_GPU-1.json").write_text("{not json")
        evictor = OveruseEvictor(connect(str(kubeconfig), "gpu-1"), str(switch))
        assert evictor.scan() == 1
        # Eviction is a graceful delete: the kubelet would stop the pod; the other pod is untouched.
        assert api.registry.get("pods", "greedy", "default")["metadata"].get("deletionTimestamp")
        assert not api.registry.get("pods", "modest", "default")["metadata"].get("deletionTimestamp")
        assert evictor.scan() == 0, "a pod is evicted once per mark, not at every scan"
