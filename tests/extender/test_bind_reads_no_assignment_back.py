"""A pod this extender binds crosses the assignment boundary once: bind spells its placement as the
signed document, and the pod's watch events (the Binding, the device plugin's allocated mark) count the
placement bind chose, without reading the document's device IDs back into grants."""

from __future__ import annotations

import copy
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from extender_builders import make_node
from extender_builders import pod as make_pod

import extender.cache
from extender.cache import ClusterCache
from extender.metrics import ExtenderMetrics
from extender.placement.policies import PolicyContext
from extender.verbs import ExtenderVerbs
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT
from tessera.assignment import read_assignment


class BindingApi:
    """The API server as bind sees it: the pod to read, and the Binding it writes (kept here)."""

    def __init__(self, pod: dict) -> None:
        self.pod, self.bound = pod, None

    def get_pod(self, namespace: str, name: str) -> dict:
        return copy.deepcopy(self.pod)

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict | None = None) -> None:
        self.bound = copy.deepcopy(self.pod)
        self.bound["spec"]["nodeName"] = node
        self.bound["metadata"]["annotations"] = dict(annotations or {})


def test_the_watch_counts_the_placement_bind_chose_without_reading_it_back(monkeypatch):
    key = Ed25519PrivateKey.generate()
    cache = ClusterCache(public_key=key.public_key())
    cache.fleet.add(make_node("n1", gpus=2))
    pod = make_pod({"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"}, name="p")
    api = BindingApi(pod)
    verbs = ExtenderVerbs(cache, api, key, PolicyContext(), ExtenderMetrics())
    meta = pod["metadata"]
    body = {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": "n1"}
    assert verbs.bind(json.dumps(body).encode()) == {"Error": ""}
    chosen = cache.placements()["ns/p"]

    read_back = []
    monkeypatch.setattr(extender.cache, "placement_of", lambda *a: read_back.append(a) or None)
    allocated = copy.deepcopy(api.bound)
    allocated["metadata"]["annotations"][ANNOTATION_ALLOCATED] = "main"
    for event in (api.bound, allocated, allocated):
        cache.pod_event("MODIFIED", event)
        assert cache.placements()["ns/p"] is chosen, "the pod holds exactly what bind chose"
    assert read_back == [], "no watch event read the assignment's device IDs back into grants"
    doc, _ = read_assignment(api.bound["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
    grant = chosen.grants[0]
    assert doc.containers["c0"]["nvidia.com/mps-core"].core == grant.core == 30
    assert len(doc.containers["c0"]["nvidia.com/mps-memory"].device_ids) == grant.memory_gib == 4


def test_a_pod_bound_elsewhere_is_still_read_from_its_assignment(monkeypatch):
    """The other path is kept: a pod another replica (or this one before a restart) bound is counted
    from its signed document."""
    key = Ed25519PrivateKey.generate()
    pod = make_pod({"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"}, name="p")
    first = ClusterCache(public_key=key.public_key())
    first.fleet.add(make_node("n1", gpus=2))
    api = BindingApi(pod)
    assert ExtenderVerbs(first, api, key, PolicyContext(), ExtenderMetrics()).bind(json.dumps(
        {"PodName": "p", "PodNamespace": "ns", "PodUID": pod["metadata"]["uid"], "Node": "n1"}).encode()) == {"Error": ""}
    restarted = ClusterCache(public_key=key.public_key())
    restarted.fleet.add(make_node("n1", gpus=2))
    restarted.pod_event("ADDED", api.bound)
    assert restarted.placements()["ns/p"] == first.placements()["ns/p"]
