"""kube-scheduler's JSON in and out of the extender over HTTP: filter keeps every feasible node with a
reason for each other one, prioritize scores 0..10, bind writes a signed assignment and the Binding,
preempt keeps only nodes where the victims really free a fit; bad input gets a clear error and the
daemon goes on serving."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, watch
from extender_cluster import api_server, bind_args, create, gpu_pod, post

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT
from tessera.assignment import load_public_key, verify_assignment

from simcluster.extenders import start_extender

NODES = [NodeSpec("mps-a", "T4", 1, mode="mps"), NodeSpec("mps-b", "T4", 1, mode="mps"),
         NodeSpec("excl", "T4", 2, mode="exclusive"), NodeSpec("tiny", "T4", 1, mode="mps", cpu_milli=1000)]
NAMES = [n.name for n in NODES]


@pytest.fixture
def cluster(tmp_path):
    with api_server(tmp_path, NODES) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False, max_body_bytes=64 * 1024)
        try:
            yield srv, ext, tmp_path
        finally:
            ext.stop()


def _wait(predicate, what: str, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def _filter_args(pod: dict, names=NAMES) -> dict:
    # ExtenderArgs as kube-scheduler marshals it with nodeCacheCapable: true (Go field names, Nodes null).
    return {"Pod": pod, "Nodes": None, "NodeNames": list(names)}


def test_filter_keeps_every_feasible_node_and_gives_a_reason_for_the_rest(cluster):
    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("train", {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 4, "cpu": "2"}))
    status, result = post(ext.url, "filter", _filter_args(pod, NAMES + ["unknown"]))
    assert status == 200
    assert set(result) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert result["Error"] == "" and result["Nodes"] is None
    assert result["NodeNames"] == ["mps-a", "mps-b"]
    assert result["FailedAndUnresolvableNodes"]["excl"] == "node(s) had no GPU in mps mode"
    assert result["FailedAndUnresolvableNodes"]["tiny"] == "Insufficient cpu"
    assert "unknown" in result["FailedNodes"]
    every = set(result["NodeNames"]) | set(result["FailedNodes"]) | set(result["FailedAndUnresolvableNodes"])
    assert every == set(NAMES) | {"unknown"}


def test_prioritize_answers_host_priority_list_0_to_10(cluster):
    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("p", {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 3}))
    status, scores = post(ext.url, "prioritize", _filter_args(pod, ["mps-a", "mps-b", "excl"]))
    assert status == 200
    assert [s["Host"] for s in scores] == ["mps-a", "mps-b", "excl"]
    assert all(set(s) == {"Host", "Score"} and 0 <= s["Score"] <= 10 for s in scores)
    assert scores[2]["Score"] == 0 and scores[0]["Score"] == 10


def test_bind_writes_a_signed_assignment_with_the_binding(cluster):
    srv, ext, workdir = cluster
    pod = create(srv, gpu_pod("p", {"nvidia.com/mps-core": 40, "nvidia.com/mps-memory": 6}))
    status, result = post(ext.url, "bind", bind_args(pod, "mps-b"))
    assert (status, result) == (200, {"Error": ""})
    stored = srv.registry.get("pods", "p", "default")
    assert stored["spec"]["nodeName"] == "mps-b"
    doc = verify_assignment(stored["metadata"]["annotations"][ANNOTATION_ASSIGNMENT], pod["metadata"]["uid"],
                            load_public_key(str(workdir / "extender.pub")), node="mps-b")
    grant = doc.containers["main"]
    assert grant["nvidia.com/mps-core"].core == 40 and len(grant["nvidia.com/mps-core"].device_ids) == 40
    assert grant["nvidia.com/mps-memory"].mem_gib == 6 and len(grant["nvidia.com/mps-memory"].device_ids) == 6
    # The cache holds it: the node now has 60 % left, so a 70 % pod no longer fits there.
    big = create(srv, gpu_pod("big", {"nvidia.com/mps-core": 70, "nvidia.com/mps-memory": 2}))
    _, result = post(ext.url, "filter", _filter_args(big, ["mps-a", "mps-b"]))
    assert result["NodeNames"] == ["mps-a"] and "mps-b" in result["FailedNodes"]


def test_the_assignment_and_the_node_arrive_in_one_update(cluster):
    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("one-write", {"nvidia.com/mps-core": 20, "nvidia.com/mps-memory": 2}))
    before = int(srv.registry.get("pods", "one-write", "default")["metadata"]["resourceVersion"])
    assert post(ext.url, "bind", bind_args(pod, "mps-a"))[1] == {"Error": ""}
    stored = srv.registry.get("pods", "one-write", "default")
    assert stored["spec"]["nodeName"] == "mps-a" and ANNOTATION_ASSIGNMENT in stored["metadata"]["annotations"]
    # One write: a watcher sees one change, with both the node and the assignment.
    core = client.CoreV1Api(client.ApiClient(client.Configuration(host=srv.url)))
    seen = [(e["type"], bool(e["raw_object"]["spec"].get("nodeName")),
             ANNOTATION_ASSIGNMENT in (e["raw_object"]["metadata"].get("annotations") or {}))
            for e in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=str(before),
                                          field_selector="metadata.name=one-write", timeout_seconds=1)]
    assert seen == [("MODIFIED", True, True)]


def test_same_shape_waits_until_the_plugin_has_allocated(cluster):
    srv, ext, _ = cluster
    first = create(srv, gpu_pod("first", {"nvidia.com/mps-core": 20, "nvidia.com/mps-memory": 2}))
    assert post(ext.url, "bind", bind_args(first, "mps-a"))[1] == {"Error": ""}
    second = create(srv, gpu_pod("second", {"nvidia.com/mps-core": 20, "nvidia.com/mps-memory": 3}))
    _, result = post(ext.url, "filter", _filter_args(second, ["mps-a", "mps-b"]))
    assert result["NodeNames"] == ["mps-b"]
    assert "same nvidia.com/mps-core: 20 bound and not yet allocated" in result["FailedNodes"]["mps-a"]
    # Where the wait keeps it off every node, the answer is an error: kube-scheduler retries an error
    # after its back-off, but parks an unschedulable pod until an event it watches (up to 5 minutes).
    _, alone = post(ext.url, "filter", _filter_args(second, ["mps-a"]))
    assert alone["NodeNames"] in (None, []) and not alone.get("FailedNodes")
    assert alone["Error"].startswith("retry after back-off: every node that fits is waiting for an allocation: "
                                     "mps-a: node(s) had a pod asking the same nvidia.com/mps-core: 20")
    # Bind re-checks the rule too, so a scheduler that raced past filter cannot break it.
    _, answer = post(ext.url, "bind", bind_args(second, "mps-a"))
    assert "not yet allocated" in answer["Error"]
    # A pod of another size is not held back.
    other = create(srv, gpu_pod("other", {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 3}))
    assert "mps-a" in post(ext.url, "filter", _filter_args(other, ["mps-a"]))[1]["NodeNames"]
    # Once the device plugin marks the first pod allocated, the node is open to the same size again.
    srv.registry.patch("pods", "first", {"metadata": {"annotations": {ANNOTATION_ALLOCATED: "main"}}},
                       namespace="default")
    _wait(lambda: post(ext.url, "filter", _filter_args(second, ["mps-a"]))[1]["NodeNames"] == ["mps-a"],
          "the allocated mark to reach the cache")


def test_bind_refuses_a_node_the_pod_no_longer_fits(cluster):
    srv, ext, _ = cluster
    a = create(srv, gpu_pod("a", {"nvidia.com/mps-core": 80, "nvidia.com/mps-memory": 8}))
    b = create(srv, gpu_pod("b", {"nvidia.com/mps-core": 60, "nvidia.com/mps-memory": 4}))
    assert post(ext.url, "bind", bind_args(a, "mps-a"))[1] == {"Error": ""}
    _, answer = post(ext.url, "bind", bind_args(b, "mps-a"))
    assert "does not fit on mps-a" in answer["Error"]
    assert "nodeName" not in srv.registry.get("pods", "b", "default")["spec"]
    assert ANNOTATION_ASSIGNMENT not in (srv.registry.get("pods", "b", "default")["metadata"].get("annotations") or {})


def test_preempt_keeps_only_nodes_where_the_victims_free_a_fit(cluster):
    srv, ext, _ = cluster
    small = create(srv, gpu_pod("small", {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 3}))
    big = create(srv, gpu_pod("big", {"nvidia.com/mps-core": 60, "nvidia.com/mps-memory": 6}))
    other = create(srv, gpu_pod("other", {"nvidia.com/mps-core": 70, "nvidia.com/mps-memory": 7}))
    for p, node in ((small, "mps-a"), (big, "mps-a"), (other, "mps-b")):
        assert post(ext.url, "bind", bind_args(p, node))[1] == {"Error": ""}
    _wait(lambda: len(ext.cache.placements()) == 3, "the binds in the cache")
    want = create(srv, gpu_pod("want", {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 5}))
    # kube-scheduler proposes: on mps-a evict only "small" (frees 30 %: 40 % left, not enough);
    # on mps-b evict "other" (frees 70 %: enough).
    args = {"Pod": want, "NodeNameToVictims": None, "NodeNameToMetaVictims": {
        "mps-a": {"Pods": [{"UID": small["metadata"]["uid"]}], "NumPDBViolations": 0},
        "mps-b": {"Pods": [{"UID": other["metadata"]["uid"]}], "NumPDBViolations": 1}}}
    status, result = post(ext.url, "preempt", args)
    assert status == 200
    assert result == {"NodeNameToMetaVictims": {
        "mps-b": {"Pods": [{"UID": other["metadata"]["uid"]}], "NumPDBViolations": 1}}}


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (json.dumps({"Pod": "a pod", "NodeNames": []}).encode(), "Pod must be a JSON object"),
    (json.dumps({"Pod": {"metadata": {"name": "x", "namespace": "d"}, "spec": {}}, "NodeNames": "n1"}).encode(),
     "NodeNames must be a list"),
    (json.dumps({"Pod": {"metadata": {"name": "x", "namespace": "d"}, "spec": {}}}).encode(), "needs NodeNames"),
])
def test_bad_filter_input_answers_an_error_and_the_daemon_keeps_serving(cluster, body, message):
    srv, ext, _ = cluster
    status, result = post(ext.url, "filter", body)
    assert status == 200 and message in result["Error"] and result["NodeNames"] is None
    status, result = post(ext.url, "prioritize", body)
    assert status == 400 and message in result["error"]
    pod = create(srv, gpu_pod("ok", {"nvidia.com/mps-core": 10, "nvidia.com/mps-memory": 1}))
    assert post(ext.url, "filter", _filter_args(pod))[1]["NodeNames"] == ["mps-a", "mps-b", "tiny"]


def test_bad_bind_input_and_oversized_bodies(cluster):
    srv, ext, _ = cluster
    status, result = post(ext.url, "bind", {"PodName": "p", "PodNamespace": "default", "PodUID": 7, "Node": "n"})
    assert status == 200 and result["Error"] == "ExtenderBindingArgs.PodUID must be a non-empty string"
    huge = b'{"Pod": {}, "NodeNames": ["' + b"x" * (65 * 1024) + b'"]}'
    status, result = post(ext.url, "filter", huge)
    assert status == 200 and "over the limit of 65536" in result["Error"]
    status, result = post(ext.url, "preempt", huge)
    assert status == 400 and "over the limit" in result["error"]
    # A malformed pod request is refused on every node with the reason the user reads.
    bad = create(srv, gpu_pod("bad", {"nvidia.com/mps-core": 150}))
    _, result = post(ext.url, "filter", _filter_args(bad, ["mps-a"]))
    assert "not in whole hundreds" in result["FailedAndUnresolvableNodes"]["mps-a"]
    status, _ = post(ext.url, "filter", _filter_args(bad, ["mps-a"]))
    assert status == 200


def test_healthz_and_metrics(cluster):
    import urllib.request

    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("m", {"nvidia.com/mps-core": 25, "nvidia.com/mps-memory": 2}))
    post(ext.url, "filter", _filter_args(pod))
    post(ext.url, "bind", bind_args(pod, "mps-a"))
    with urllib.request.urlopen(ext.url + "/healthz") as resp:
        assert resp.status == 200
    with urllib.request.urlopen(ext.url + "/metrics") as resp:
        text = resp.read().decode()
    assert 'tessera_extender_decisions_total{outcome="bound",reason="",verb="bind"} 1.0' in text
    assert 'tessera_extender_request_seconds_count{verb="filter"} 1.0' in text
    assert 'tessera_node_fragmentation_cores{node="mps-a"}' in text
    assert 'tessera_cluster_free_gpu_cores{mode="mps"} 275.0' in text  # 3 MPS GPUs, 25 % of one held


def test_a_node_name_array_sent_again_is_read_as_it_was_and_look_alikes_are_not_trusted(cluster):
    # The second sighting of the same NodeNames bytes is read from the kept spelling; answers must equal
    # the first. A body whose pod carries "NodeNames" text, or a later member after NodeNames, or a
    # case variant of the key before it, is read by a full decode.
    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("again", {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 4, "cpu": "2"}))
    body = json.dumps(_filter_args(pod, NAMES + ["unknown"])).encode()
    first = post(ext.url, "filter", body)
    assert first == post(ext.url, "filter", body) == post(ext.url, "filter", body)
    assert first[1]["NodeNames"] == ["mps-a", "mps-b"]
    sneaky = json.loads(json.dumps(pod))
    sneaky["metadata"]["annotations"] = {"note": '"NodeNames": ["excl"]}'}
    status, result = post(ext.url, "filter", {"Pod": sneaky, "NodeNames": ["mps-a"]})
    assert status == 200 and result["NodeNames"] == ["mps-a"]
    names_json = json.dumps(NAMES + ["unknown"])
    after = f'{{"Pod": {json.dumps(pod)}, "NodeNames": {names_json}, "Nodes": null}}'.encode()
    assert post(ext.url, "filter", after) == first
    shadowed = f'{{"Pod": {json.dumps(pod)}, "nodeNames": ["excl"], "NodeNames": {names_json}}}'.encode()
    assert post(ext.url, "filter", shadowed) == first  # Go's decoder: the last case-insensitive match wins
    nested = f'{{"Pod": {json.dumps(pod)}, "Nodes": {{"items": [], "NodeNames": {names_json}}}}}'.encode()
    status, result = post(ext.url, "filter", nested)
    assert status == 200 and result["NodeNames"] == [] and result["Error"] == ""
    scores = post(ext.url, "prioritize", {"Pod": pod, "NodeNames": ["mps-a", "mps-b"]})
    assert scores == post(ext.url, "prioritize", {"Pod": pod, "NodeNames": ["mps-a", "mps-b"]})
    assert [s["Host"] for s in scores[1]] == ["mps-a", "mps-b"]
