"""bind signs what the pod asks, as the API server has it: a filter, prioritize or preempt body that
says otherwise (same pod name, UID and resourceVersion, a smaller request) changes nothing. bind took
the request from a memo those bodies fill, so a forged filter body followed by /bind got a 60 % pod
signed for 1 % on a node of the caller's choice. bind reads the pod from the extender's watch when it
has delivered it, else from the API server: both are checked."""

from __future__ import annotations

import copy
import time

import pytest
from extender_cluster import api_server, bind_args, create, gpu_pod, post

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import load_public_key, verify_assignment

from simcluster import poll_until
from simcluster.extenders import start_extender

NODES = [NodeSpec("mps-a", "T4", 1, mode="mps"), NodeSpec("mps-b", "T4", 1, mode="mps")]
NAMES = [n.name for n in NODES]


@pytest.fixture
def cluster(tmp_path):
    with api_server(tmp_path, NODES) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False)
        try:
            yield srv, ext, load_public_key(str(tmp_path / "extender.pub"))
        finally:
            ext.stop()


def forged(pod: dict, core: int, gib: int) -> dict:
    """The same pod (name, UID, resourceVersion) as a forged body describes it: a smaller request."""
    fake = copy.deepcopy(pod)
    asks = {"nvidia.com/mps-core": str(core), "nvidia.com/mps-memory": str(gib)}
    fake["spec"]["containers"][0]["resources"] = {"limits": asks, "requests": dict(asks)}
    return fake


def watched(ext, pod: dict) -> None:
    """Wait until the extender's watch has delivered ``pod`` (hang guard only)."""
    meta = pod["metadata"]
    deadline = time.monotonic() + 120
    while ext.pending.get(meta["uid"], meta["namespace"], meta["name"]) is None:
        assert time.monotonic() < deadline, "the watch never delivered the pod"
        time.sleep(0.01)


@pytest.mark.parametrize("source", ["watch", "API server"])
@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt"])
def test_a_forged_body_before_bind_does_not_change_what_bind_signs(cluster, monkeypatch, verb, source):
    srv, ext, public_key = cluster
    pod = create(srv, gpu_pod("big", {"nvidia.com/mps-core": 60, "nvidia.com/mps-memory": 9}))
    if source == "watch":
        watched(ext, pod)
    else:  # the watch has not delivered the pod yet: bind reads it from the API server
        monkeypatch.setattr(ext.pending, "get", lambda uid, namespace, name: None)
    body = {"Pod": forged(pod, 1, 1), "NodeNames": NAMES}
    if verb == "preempt":
        body = {"Pod": forged(pod, 1, 1), "NodeNameToMetaVictims": {"mps-a": {"Pods": [], "NumPDBViolations": 0}}}
    status, _ = post(ext.url, verb, body)
    assert status == 200
    assert post(ext.url, "bind", bind_args(pod, "mps-a"))[1] == {"Error": ""}
    stored = srv.registry.get("pods", "big", "default")
    doc = verify_assignment(stored["metadata"]["annotations"][ANNOTATION_ASSIGNMENT], pod["metadata"]["uid"],
                            public_key, node="mps-a")
    grant = doc.containers["main"]
    assert grant["nvidia.com/mps-core"].core == 60 and grant["nvidia.com/mps-memory"].mem_gib == 9
    # The books agree: 40 % is left on mps-a, so a 50 % pod no longer fits there.
    other = create(srv, gpu_pod("other", {"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 2}))
    _, result = post(ext.url, "filter", {"Pod": other, "NodeNames": NAMES})
    assert result["NodeNames"] == ["mps-b"] and "mps-a" in result["FailedNodes"]


def test_bind_of_a_pod_already_bound_is_refused_without_a_second_assignment(cluster):
    srv, ext, _ = cluster
    pod = create(srv, gpu_pod("once", {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 3}))
    assert post(ext.url, "bind", bind_args(pod, "mps-a"))[1] == {"Error": ""}
    first = srv.registry.get("pods", "once", "default")["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]
    _, result = post(ext.url, "bind", bind_args(pod, "mps-b"))
    assert "already bound to mps-a" in result["Error"]
    stored = srv.registry.get("pods", "once", "default")
    assert stored["spec"]["nodeName"] == "mps-a"
    assert stored["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] == first


def test_a_second_bind_before_the_first_one_s_watch_event_is_refused_as_already_bound(cluster, monkeypatch):
    """The extender knows a pod is bound once the API server took its Binding, not only once the watch
    says so: a second bind in between is refused, and the first one's hold stays where it is."""
    srv, ext, _ = cluster
    held_back = []

    def late(pod_event):
        def event(kind, obj, *args, **kwargs):  # the watch is slow: this pod's events wait
            if (obj.get("metadata") or {}).get("name") == "late" and kind != "ADDED":
                held_back.append((kind, obj))
                return None
            return pod_event(kind, obj, *args, **kwargs)
        return event

    monkeypatch.setattr(ext.cache, "pod_event", late(ext.cache.pod_event))
    monkeypatch.setattr(ext.pending, "pod_event", late(ext.pending.pod_event))
    pod = create(srv, gpu_pod("late", {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 3}))
    uid = pod["metadata"]["uid"]
    poll_until(lambda: ext.pending.get(uid, "default", "late"), timeout_s=60,  # hang guard only
               what="the pod in the extender's watch")
    assert post(ext.url, "bind", bind_args(pod, "mps-a"))[1] == {"Error": ""}
    poll_until(lambda: held_back, timeout_s=60, what="the Binding's watch event, held back")  # hang guard only
    _, result = post(ext.url, "bind", bind_args(pod, "mps-b"))
    assert "already bound to mps-a" in result["Error"]
    with ext.cache.lock:
        assert "default/late" in ext.cache.fleet.get("mps-a").pods  # its hold was not dropped
    assert srv.registry.get("pods", "late", "default")["spec"]["nodeName"] == "mps-a"
