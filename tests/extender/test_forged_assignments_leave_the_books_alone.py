"""A pod's owner cannot rewrite the extender's books through the pod's annotations (issue 14, item 3).

Where the webhook is not in the way (an older install, a cluster without it), a user who wrote an
unsigned ``writtenBy: device-plugin`` assignment onto a running pod was counted as holding every GPU
it named, and an empty or badly signed value made the pod's real share vanish. The extender now
counts a plugin-written assignment only where it holds what the pod asks for and what its
``tessera.io/allocated`` record says, and a rejected one leaves the pod with what it was last seen
holding (a restarted extender: what the allocated record says), with a warning naming the pod.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from extender.cache import ClusterCache
from extender.placement.fit import node_fit
from extender.assignments import assignment_of
from extender.placement import choose_gpus
from tessera.podrequest import pod_request
from simcluster.cluster import NodeSpec
from simcluster.lightnodes import light_inventory, light_node_object
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, RESOURCE_GPU
from tessera.assignment import (
    WRITTEN_BY_PLUGIN,
    Assignment,
    ResourceAssignment,
    plugin_assignment,
    sign_assignment,
)

EXCLUSIVE = NodeSpec("n1", "T4", 4, mode="exclusive")
MPS = NodeSpec("m1", "T4", 2, mode="mps")


def cache_with(spec: NodeSpec, public_key=None) -> ClusterCache:
    """An extender's cache that has seen one node (as its informer would)."""
    cache = ClusterCache(public_key=public_key)
    cache.node_event("ADDED", light_node_object(spec))
    return cache


def gpu_pod(name: str, limits: dict, node: str, annotations: dict) -> dict:
    """A running pod as the watch delivers it, bound to ``node``."""
    limits = {k: str(v) for k, v in limits.items()}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "annotations": annotations},
            "spec": {"nodeName": node, "schedulerName": "tessera-scheduler",
                     "containers": [{"name": "main", "resources": {"limits": limits, "requests": limits}}]},
            "status": {"phase": "Running"}}


def allocated_record(node: str, containers: dict) -> str:
    """``tessera.io/allocated`` as the device plugin's ledger worker writes it."""
    return json.dumps({"version": 1, "node": node, "containers": {
        c: {r: g.to_dict() for r, g in sorted(res.items())} for c, res in sorted(containers.items())}},
        sort_keys=True, separators=(",", ":"))


def with_annotations(pod: dict, **changes: str | None) -> dict:
    """The pod after its owner's patch: ``assignment=...`` or ``allocated=...`` (None removes it)."""
    keys = {"assignment": ANNOTATION_ASSIGNMENT, "allocated": ANNOTATION_ALLOCATED}
    annotations = dict(pod["metadata"]["annotations"])
    for name, value in changes.items():
        annotations.pop(keys[name], None)
        if value is not None:
            annotations[keys[name]] = value
    return {**pod, "metadata": {**pod["metadata"], "annotations": annotations}}


def used(cache: ClusterCache, node: str) -> list[float]:
    """How much of each GPU of ``node`` the extender counts as held."""
    return [g.used_fraction for g in cache.fleet[node].gpus]


def rejected(logs: list[dict], pod: str) -> bool:
    return any(e["event"] == "assignment_rejected" and e["pod"] == pod and e["log_level"] == "warning" for e in logs)


def test_a_forged_plugin_written_assignment_does_not_claim_the_nodes_gpus():
    cache = cache_with(EXCLUSIVE)
    gpus = [g.uuid for g in light_inventory(EXCLUSIVE).gpus]
    given = {"main": {RESOURCE_GPU: ResourceAssignment((gpus[0],), (gpus[0],))}}
    # The pod reached the node without the extender: the plugin recorded what the kubelet gave it.
    pod = gpu_pod("owner", {RESOURCE_GPU: 1}, "n1", {
        ANNOTATION_ASSIGNMENT: plugin_assignment(Assignment("n1", "uid-owner", given, written_by=WRITTEN_BY_PLUGIN)),
        ANNOTATION_ALLOCATED: allocated_record("n1", given)})
    cache.pod_event("ADDED", pod)
    assert used(cache, "n1") == [1, 0, 0, 0]
    all_four = {"main": {RESOURCE_GPU: ResourceAssignment(tuple(gpus), tuple(gpus))}}
    four_named_one_id = {"main": {RESOURCE_GPU: ResourceAssignment(tuple(gpus), (gpus[0],))}}
    another_gpu = {"main": {RESOURCE_GPU: ResourceAssignment((gpus[3],), (gpus[3],))}}
    forgeries = [
        {"assignment": plugin_assignment(Assignment("n1", "uid-owner", all_four, written_by=WRITTEN_BY_PLUGIN))},
        {"assignment": plugin_assignment(Assignment("n1", "uid-owner", four_named_one_id,
                                                    written_by=WRITTEN_BY_PLUGIN))},
        # Both records forged alike: still more than the pod asks for.
        {"assignment": plugin_assignment(Assignment("n1", "uid-owner", all_four, written_by=WRITTEN_BY_PLUGIN)),
         "allocated": allocated_record("n1", all_four)},
        # The right size on another GPU, without the plugin's allocated record to back it.
        {"assignment": plugin_assignment(Assignment("n1", "uid-owner", another_gpu, written_by=WRITTEN_BY_PLUGIN))},
    ]
    three_more = pod_request(gpu_pod("next", {RESOURCE_GPU: 3}, "", {}))
    for forged in forgeries:
        with capture_logs() as logs:
            cache.pod_event("MODIFIED", with_annotations(pod, **forged))
        assert used(cache, "n1") == [1, 0, 0, 0], forged
        assert node_fit(three_more, cache.fleet["n1"]) is None  # the other three GPUs are still free
        assert rejected(logs, "default/owner"), forged
    # An extender that starts after the forgery counts what the plugin recorded the kubelet gave.
    restarted = cache_with(EXCLUSIVE)
    restarted.pod_event("ADDED", with_annotations(pod, **forgeries[0]))
    assert used(restarted, "n1") == [1, 0, 0, 0]


@pytest.fixture
def signed_share():
    """An MPS share the extender placed and signed on m1, bound, and allocated by the plugin."""
    key = Ed25519PrivateKey.generate()
    cache = cache_with(MPS, key.public_key())
    limits = {"nvidia.com/mps-core": 60, "nvidia.com/mps-memory": 8}
    request = pod_request(gpu_pod("share", limits, "m1", {}))
    with cache.lock:
        placement = choose_gpus(request, cache.fleet["m1"].copy())
    doc = assignment_of(placement, request, "uid-share")
    pod = gpu_pod("share", limits, "m1", {ANNOTATION_ASSIGNMENT: sign_assignment(doc, key),
                                           ANNOTATION_ALLOCATED: allocated_record("m1", doc.containers)})
    cache.pod_event("ADDED", pod)
    held = used(cache, "m1")
    assert sorted(held) == [0, pytest.approx(0.6)]
    return key, cache, pod, held


def test_an_empty_or_badly_signed_assignment_does_not_make_the_share_vanish(signed_share):
    key, cache, pod, held = signed_share
    value = json.loads(pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
    bad_signature = json.dumps({**value, "signature": value["signature"][::-1]})
    other_key = sign_assignment(Assignment(value["node"], value["podUID"], {}), Ed25519PrivateKey.generate())
    for bad in ("", "{}", "not json", bad_signature, other_key, None):
        with capture_logs() as logs:
            cache.pod_event("MODIFIED", with_annotations(pod, assignment=bad))
        assert used(cache, "m1") == held, bad
        assert rejected(logs, "default/share"), bad
        # A restarted extender counts the plugin's allocated record, which matches the pod's request.
        restarted = cache_with(MPS, key.public_key())
        restarted.pod_event("ADDED", with_annotations(pod, assignment=bad))
        assert used(restarted, "m1") == held, bad


def test_the_genuine_records_are_counted_again_once_restored(signed_share):
    _, cache, pod, held = signed_share
    cache.pod_event("MODIFIED", with_annotations(pod, assignment=""))
    with capture_logs() as logs:
        cache.pod_event("MODIFIED", pod)
    assert used(cache, "m1") == held
    assert not rejected(logs, "default/share")
