"""kube-scheduler sends a pod's bind from a goroutine and goes on to the next pod at once, so the next
pod's filter can reach the extender before the first pod's bind. Two pods of one shape in a row, with
one node best for both, then met the per-shape rule at bind: the second was refused and waited out
kube-scheduler's back-off (1 to 10 s). Filter now answers a pod's best nodes only
(``filter_best_nodes``) and keeps a later pod of the same shape off them until that bind arrives,
while the later pod fits elsewhere."""

from __future__ import annotations

import json
import time

from extender_builders import hold, make_node
from extender_builders import pod as make_pod

from extender.cache import ClusterCache
from extender.expectations import ExpectedBinds
from extender.metrics import ExtenderMetrics
from extender.placement import PolicyContext, choose_gpus
from extender.verbs import ExtenderVerbs

HALF = {"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}
NAMES = ["empty-a", "used", "empty-b", "empty-c"]


def _verbs(best: int) -> ExtenderVerbs:
    """Four MPS nodes, one with half a GPU taken (the tightest fit for a pod asking the other half)."""
    used = make_node("used")
    hold(used, 0, 50)
    cache = ClusterCache()
    for node in (make_node("empty-a"), used, make_node("empty-b"), make_node("empty-c")):
        cache.fleet.add(node)
    return ExtenderVerbs(cache, None, None, PolicyContext(), ExtenderMetrics(), filter_best_nodes=best)


def _filter(verbs: ExtenderVerbs, pod: dict, names: list[str] = NAMES) -> dict:
    return json.loads(verbs.filter(json.dumps({"Pod": pod, "NodeNames": names}).encode()))


def _bind_arrives(verbs: ExtenderVerbs, pod: dict, node: str) -> None:
    request = verbs._request(pod)
    with verbs.cache.lock:
        placement = choose_gpus(request, verbs.cache.fleet[node], None, verbs.ctx)
        verbs.cache.assume(placement, request, pod["metadata"]["uid"])


def test_filter_answers_the_best_nodes_only_in_the_order_given():
    verbs = _verbs(best=1)
    assert _filter(verbs, make_pod(HALF, name="first"))["NodeNames"] == ["used"]
    assert _filter(_verbs(best=0), make_pod(HALF, name="first"))["NodeNames"] == NAMES   # 0: every node
    assert _filter(_verbs(best=9), make_pod(HALF, name="first"))["NodeNames"] == NAMES   # more than fit


def test_the_next_pod_of_the_same_shape_is_kept_off_the_nodes_answered_until_the_bind():
    verbs = _verbs(best=2)
    first = _filter(verbs, make_pod(HALF, name="first"))["NodeNames"]
    assert len(first) == 2 and "used" in first
    got = _filter(verbs, make_pod(HALF, name="second"))
    assert got["NodeNames"] == [n for n in NAMES if n not in first]
    assert "ns/first" in got["FailedNodes"]["used"] and "until its bind arrives" in got["FailedNodes"]["used"]

    _bind_arrives(verbs, make_pod(HALF, name="first"), "used")   # from here the per-shape rule holds the node
    got = _filter(verbs, make_pod(HALF, name="second"))
    assert "used" not in got["NodeNames"] and "not yet allocated" in got["FailedNodes"]["used"]
    assert set(first) - {"used"} <= set(got["NodeNames"])   # the other node answered to the first is free again


def test_a_pod_of_another_shape_or_the_pod_itself_still_gets_the_nodes():
    verbs = _verbs(best=1)
    _filter(verbs, make_pod(HALF, name="first"))
    other = make_pod({"nvidia.com/mps-core": "25", "nvidia.com/mps-memory": "4"}, name="other")
    assert _filter(verbs, other)["NodeNames"] == ["used"]
    assert _filter(verbs, make_pod(HALF, name="first"))["NodeNames"] == ["used"]   # its own retry


def test_an_expected_node_is_never_taken_from_a_pod_that_fits_nowhere_else():
    verbs = _verbs(best=1)
    _filter(verbs, make_pod(HALF, name="first"))
    got = _filter(verbs, make_pod(HALF, name="second"), ["used"])
    assert got["NodeNames"] == ["used"] and not got.get("Error")   # the bind decides


def test_an_expectation_lapses_when_no_bind_comes():
    expected = ExpectedBinds(ttl_s=0.5)
    shape = frozenset({("nvidia.com/gpu", 1)})
    now = time.monotonic()
    expected.expect("ns/a", ["n1"], shape, now)
    assert expected.blocked(["n1"], "ns/b", shape, now + 0.1)
    assert not expected.blocked(["n1"], "ns/b", shape, now + 0.6)
    expected.expect("ns/c", ["n2"], shape, now + 0.6)   # each new expectation sweeps out the lapsed ones
    assert "n1" not in expected.nodes and "n2" in expected.nodes


def test_a_flood_of_pods_that_never_bind_holds_no_node_past_the_ttl():
    """A tenant creating pods of one size and deleting them before their bind: each filter holds its
    nodes for ``ttl_s`` at most, and the books shrink back to what the last second wrote."""
    expected = ExpectedBinds(ttl_s=1.0)
    shape = frozenset({("nvidia.com/gpu", 1)})
    now = time.monotonic()
    for i in range(5000):
        expected.expect(f"ns/flood-{i}", [f"n{i % 50}", f"n{(i + 1) % 50}"], shape, now + i * 0.0001)
    assert expected.blocked([f"n{i}" for i in range(50)], "ns/victim", shape, now + 0.6)   # within the second
    later = now + 2.0
    assert not expected.blocked([f"n{i}" for i in range(50)], "ns/victim", shape, later)
    expected.expect("ns/last", ["n0"], shape, later)
    assert expected.nodes == {"n0": {"ns/last": shape}}
