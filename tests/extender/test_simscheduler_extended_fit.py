"""The simulated scheduler checks extended resources as kube-scheduler does before the extender
(``ignoredByScheduler: false``): a node whose device plugin has not registered yet advertises nothing,
so a GPU pod waits ("Insufficient nvidia.com/gpu") instead of being bound there and refused by the
kubelet; once the node advertises its GPUs the pod is scheduled."""

from __future__ import annotations

import time

from extender_cluster import api_server, create, gpu_pod, mps_nodes

from extender.kubeapi import KubeApi, api_client
from simcluster.extenders import start_extender
from simcluster.simfit import ExtendedFit, extended_requests
from simcluster.simscheduler import SimScheduler


def node(name: str, **allocatable: str) -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": "8", **allocatable}}}


def bound_pod(uid: str, node_name: str, gpus: int, phase: str = "Running") -> dict:
    return {"metadata": {"uid": uid}, "spec": {"nodeName": node_name, "containers": [
        {"resources": {"requests": {"nvidia.com/gpu": str(gpus), "cpu": "1"}}}]}, "status": {"phase": phase}}


def test_requests_sum_containers_and_take_the_largest_init_container():
    pod = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "3"}}},
                                   {"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
                    "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    assert extended_requests(pod) == {"nvidia.com/gpu": 4}


def test_free_is_allocatable_less_what_bound_unfinished_pods_request():
    fit = ExtendedFit()
    fit.replace_nodes([node("a", **{"nvidia.com/gpu": "2"}), node("b", **{"nvidia.com/gpu": "4"}), node("c")])
    want = {"nvidia.com/gpu": 2}
    assert fit.filter(want, ["a", "b", "c"]) == (["a", "b"], {"nvidia.com/gpu": 1})
    fit.pod_event("ADDED", bound_pod("p1", "a", 1))
    fit.pod_event("ADDED", bound_pod("p2", "b", 1))
    fit.pod_event("ADDED", bound_pod("done", "b", 3, phase="Succeeded"))  # finished pods hold nothing
    assert fit.filter(want, ["a", "b", "c"]) == (["b"], {"nvidia.com/gpu": 2})
    fit.pod_event("DELETED", bound_pod("p1", "a", 1))
    assert fit.filter(want, ["a", "b", "c"])[0] == ["a", "b"]
    assumed = bound_pod("p3", "", 2)
    fit.assume(assumed, "a")                       # counted before its bind is seen
    assert fit.filter(want, ["a", "b", "c"])[0] == ["b"]
    fit.forget(assumed)                            # the bind failed
    assert fit.filter(want, ["a", "b", "c"])[0] == ["a", "b"]
    fit.node_event("MODIFIED", node("c", **{"nvidia.com/gpu": "8"}))  # its device plugin registered
    assert fit.filter(want, ["a", "b", "c"])[0] == ["a", "b", "c"]
    assert fit.filter({}, ["a", "b", "c"])[0] == ["a", "b", "c"]  # no extended request: every node


def test_a_pod_waits_for_a_node_whose_plugin_has_not_registered(tmp_path):
    with api_server(tmp_path, mps_nodes(1, gpus=2)) as (srv, kubeconfig):
        # The node as the kubelet writes it before any device plugin registered: nothing advertised.
        bare = srv.registry.get("nodes", "gpu-0")
        bare["status"]["allocatable"] = {k: v for k, v in bare["status"]["allocatable"].items() if "/" not in k}
        srv.registry.replace("nodes", bare, subresource="status")
        extender = start_extender(kubeconfig, tmp_path, leader_election=False)
        api = KubeApi(api_client(str(kubeconfig)))
        loop = SimScheduler(api, extender.url, retry_s=0.2).start()
        try:
            create(srv, gpu_pod("job", {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 4}))
            deadline = time.monotonic() + 10
            while "default/job" not in loop.failures and time.monotonic() < deadline:
                time.sleep(0.05)
            assert loop.failures.get("default/job") == "0/1 nodes are available: 1 Insufficient nvidia.com/mps-core."
            assert not srv.registry.get("pods", "job", "default")["spec"].get("nodeName")
            messages = [e["message"] for e in srv.registry.list("events", "default")
                        if e.get("reason") == "FailedScheduling"]
            assert messages == ["0/1 nodes are available: 1 Insufficient nvidia.com/mps-core."]
            # The plugin registers: the kubelet writes the allocatable; the waiting pod is scheduled.
            ready = srv.registry.get("nodes", "gpu-0")
            ready["status"]["allocatable"].update({"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "30"})
            srv.registry.replace("nodes", ready, subresource="status")
            deadline = time.monotonic() + 10
            while loop.bound < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.registry.get("pods", "job", "default")["spec"].get("nodeName") == "gpu-0"
        finally:
            loop.stop()
            api.close()
            extender.stop()


def test_a_relist_keeps_assumptions_and_forgets_deleted_pods():
    fit = ExtendedFit()
    fit.replace_nodes([node("a", **{"nvidia.com/gpu": "2"})])
    fit.replace_pods([bound_pod("gone", "a", 1)])
    assumed = bound_pod("new", "", 1)
    fit.assume(assumed, "a")
    assert fit.filter({"nvidia.com/gpu": 1}, ["a"])[0] == []
    # After 410 Gone: the list no longer has "gone" (deleted meanwhile) nor "new" (its bind not seen).
    fit.replace_pods([])
    assert fit.filter({"nvidia.com/gpu": 1}, ["a"])[0] == ["a"]   # "new" still counts, "gone" does not
    assert fit.filter({"nvidia.com/gpu": 2}, ["a"])[0] == []
