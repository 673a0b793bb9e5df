"""The hot-path caches give the answers a fresh computation gives: results shared between nodes in the
same state, raw scores kept by id and by position in a recognised name list, the filter's fits reused
by prioritize, kept JSON encodings, and signature checks remembered per annotation."""

from __future__ import annotations

import copy
import itertools
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from extender_builders import make_node
from extender_builders import pod as make_pod
from extender_cluster import api_server, bind_args, create, gpu_pod, mps_nodes, post
from test_fragmentation_cache import SHAPES, churn, random_request

import extender.cache
from extender import wire
from extender.cache import ClusterCache
from simcluster.extenders import start_extender
from extender.assignments import assignment_of
from extender.metrics import ExtenderMetrics
from extender.placement import (
    Fleet,
    FragmentationModel,
    NameLists,
    PolicyContext,
    choose_gpus,
    filter_nodes,
    filter_view,
    fit,
    node_scores,
    prioritize,
)
from extender.placement.policies import SCORERS
from tessera.podrequest import pod_request, simple_request
from extender.verbs import ExtenderVerbs
from simcluster import poll_until
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT
from tessera.assignment import sign_assignment

POLICIES = ("fragmentation", "fgd", "binpack", "spread-gpu", "best-fit")


def _nodes(rng: random.Random, n: int) -> list:
    # Few kinds of node, so that many share a state and the shared memos are exercised.
    return [make_node(f"n{i:02d}", gpus=rng.choice([2, 4]), gib=16, cpu=rng.choice([32000, 64000]))
            for i in range(n)]


def test_state_shared_answers_equal_fresh_computation():
    rng = random.Random(21)
    nodes = _nodes(rng, 16)
    model = FragmentationModel(SHAPES)
    ctx = PolicyContext(shapes=model)
    requests = [random_request(rng) for _ in range(10)]
    for step, _ in enumerate(churn(nodes, rng, 300)):
        if step % 5:
            continue
        for node in nodes:
            for req in requests:
                assert fit.node_fit(req, node) == fit._fit(req, node)
                assert model.best_choice(req, node) == model._best_choice(req, node)
        ids = {n.name: n.state_id() for n in nodes}
        for a, b in itertools.combinations(nodes, 2):  # equal ids: equal states, as placement reads them
            if ids[a.name] != ids[b.name]:
                continue
            for req in requests:
                misfit = fit._fit(req, a)
                assert misfit == fit._fit(req, b)
                if misfit is None:
                    for policy in POLICIES:  # a model each: b's answer is not read back from a's memo
                        fresh_a, fresh_b = (PolicyContext(shapes=FragmentationModel(SHAPES)) for _ in "ab")
                        assert SCORERS[policy](req, a, fresh_a, fresh_a.shapes) == \
                            SCORERS[policy](req, b, fresh_b, fresh_b.shapes)
    assert ctx.fragmentation_model() is model


def _fresh_scores(req, nodes, names, policy) -> list[int]:
    """prioritize straight from copies (empty caches) and a new model: no kept result is used."""
    fit._SHARED.clear()
    ctx = PolicyContext(shapes=FragmentationModel(SHAPES))
    by_name = {n.name: n.copy() for n in nodes}
    known = [n for n in names if n in by_name]
    scores = dict(prioritize(req, [by_name[n] for n in known], policy, ctx))
    return [scores.get(n, 0) for n in names]


@pytest.mark.parametrize("policy", POLICIES)
def test_positional_scores_equal_a_full_pass_after_random_changes(policy):
    rng = random.Random(hash(policy) % 1000)
    nodes = _nodes(rng, 24)
    fleet = Fleet(nodes)
    ctx = PolicyContext(shapes=FragmentationModel(SHAPES))
    lists = NameLists()
    names = [n.name for n in nodes] + ["not-a-node"]
    rng.shuffle(names)
    requests = [random_request(rng) for _ in range(4)]
    for step, _ in enumerate(churn(nodes, rng, 160)):
        req = requests[step % len(requests)]
        asked = json.loads(json.dumps(names))  # a fresh list, as each request body decodes to
        kept = lists.find(asked)
        scores = node_scores(req, fleet, ctx, asked, kept, policy=policy)
        assert scores.names == names
        assert scores.scores() == _fresh_scores(req, nodes, names, policy)
        fits, _, _ = filter_view(req, fleet)
        plain = filter_nodes(req, [n.copy() for n in nodes])
        assert set(fits) == set(plain.fits)
        if kept is not None:
            mask = kept.answers("filter|" + req.key, fleet, fits, fits.__contains__)
            assert [n for n, m in zip(names, mask) if m] == [n for n in names if n in set(plain.fits)]
            # prioritize on the passed subsequence, by position
            passed = [n for n, m in zip(names, mask) if m]
            scores = node_scores(req, fleet, ctx, passed, kept, list(mask), policy=policy)
            assert scores.scores() == _fresh_scores(req, nodes, passed, policy)


def test_name_lists_are_recognised_from_the_second_sighting_and_never_with_duplicates():
    lists = NameLists(size=2)
    a = ["x", "y", "z"]
    assert lists.find(list(a)) is None
    kept = lists.find(list(a))
    assert kept is not None and kept.names == a and kept.pos == {"x": 0, "y": 1, "z": 2}
    assert lists.find(["x", "x"]) is None and lists.find(["x", "x"]) is None
    lists.find(["q"])
    lists.find(["r"])  # the oldest entries leave
    assert lists.find(list(a)) is None


def test_kept_encodings_equal_the_plain_encoders():
    names = ["node-a", "node-\u00e9", 'odd"name']
    scores = [3, 10, 0]
    ids = [1, 2, 0]
    score_of_id = [0, 3, 10]
    assert json.loads(wire.priority_list_ids(names, ids, score_of_id)) == \
        json.loads(wire.priority_list(list(zip(names, scores))))
    assert wire.priority_list_ids([], [], [0]) == b"[]"
    failed = {"n1": "Insufficient cpu"}
    body = wire.filter_result_bytes(names, failed, {})
    assert json.loads(body) == wire.filter_result(names, failed, {})
    assert json.loads(wire.filter_result_bytes([], {}, {})) == wire.filter_result([], {}, {})


def _verbs_on(nodes, ctx) -> ExtenderVerbs:
    cache = ClusterCache()
    for node in nodes:
        cache.fleet.add(node)
    return ExtenderVerbs(cache, None, None, ctx, ExtenderMetrics())


def _pod(i: int, core: int) -> dict:
    limits = {"nvidia.com/mps-core": str(core), "cpu": "4", "memory": "8Gi"}
    return {"metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"u{i}", "resourceVersion": str(i)},
            "spec": {"containers": [{"name": "c", "resources": {"limits": limits}}]}}


def test_verbs_answer_as_a_fresh_computation_through_many_binds():
    rng = random.Random(4)
    nodes = _nodes(rng, 30)
    ctx = PolicyContext(shapes=FragmentationModel(SHAPES), rng=random.Random(0))
    verbs = _verbs_on(nodes, ctx)
    names = [n.name for n in nodes] + ["unknown-node"]
    for i in range(60):
        pod = _pod(i, rng.choice([10, 25, 50, 100]))
        body = json.dumps({"Pod": pod, "NodeNames": names}).encode()
        got = json.loads(verbs.filter(body))
        req = verbs._request(pod)
        plain = filter_nodes(req, [n.copy() for n in nodes])
        assert got["NodeNames"] == [n for n in names if n in set(plain.fits)]
        assert got["FailedNodes"] == {**plain.failed, "unknown-node": "node not (yet) known to tessera-extender"}
        assert got["FailedAndUnresolvableNodes"] == plain.unresolvable
        fits = got["NodeNames"]
        if not fits:
            continue
        scores = json.loads(verbs.prioritize(json.dumps({"Pod": pod, "NodeNames": fits}).encode()))
        assert [s["Host"] for s in scores] == fits
        assert [s["Score"] for s in scores] == _fresh_scores(req, nodes, fits, "fragmentation")
        best = max(scores, key=lambda s: s["Score"])["Host"]
        with verbs.cache.lock:
            placement = choose_gpus(req, verbs.cache.fleet[best], None, ctx)
            verbs.cache.assume(placement, req, pod["metadata"]["uid"])
        verbs.cache.landed(placement.pod)
        verbs.cache._unpend(best, placement.pod)  # the device plugin's allocated mark


class CountingKey:
    """The extender's public key, counting the signature checks made with it."""

    def __init__(self, key) -> None:
        self.key, self.checks = key, 0

    def verify(self, signature: bytes, message: bytes) -> None:
        self.checks += 1
        self.key.verify(signature, message)

    def public_bytes_raw(self) -> bytes:  # its key id is the key's
        return self.key.public_bytes_raw()


def _signed_pod(key, node, name: str = "p") -> dict:
    """A pod bound to ``node`` (a scratch twin of the cache's) with the assignment the extender signs for it,
    as its watch events carry it."""
    pod = make_pod({"nvidia.com/mps-core": "25", "nvidia.com/mps-memory": "2"}, name=name)
    uid = pod["metadata"]["uid"]
    req = pod_request(pod)
    placement = choose_gpus(req, node)
    node.assume(placement)  # the next pod signed against this node goes beside it
    value = sign_assignment(assignment_of(placement, req, uid), key)
    pod["metadata"]["annotations"] = {ANNOTATION_ASSIGNMENT: value}
    pod["spec"]["nodeName"] = node.name
    return pod


def _cache_with_node(key, gpus: int = 1) -> tuple[ClusterCache, CountingKey]:
    counting = CountingKey(key.public_key())
    cache = ClusterCache(public_key=counting)
    cache.fleet.add(make_node("n1", gpus=gpus))
    return cache, counting


def _grants_held(cache: ClusterCache, key: str) -> bool:
    """Whether the cache counts the pod's signed GPU grants (not only its bound CPU and memory)."""
    placement = cache.placements().get(key)
    return placement is not None and bool(placement.grants)


def _with(pod: dict, **annotations: str) -> dict:
    """The same pod, a later event: more annotations (the device plugin's allocated mark) or another value."""
    later = copy.deepcopy(pod)
    later["metadata"]["annotations"].update(annotations)
    return later


def test_a_signature_is_checked_once_for_all_of_a_pods_events():
    key = Ed25519PrivateKey.generate()
    cache, counting = _cache_with_node(key)
    pod = _signed_pod(key, make_node("n1", gpus=1))
    cache.pod_event("ADDED", pod)
    cache.pod_event("MODIFIED", _with(pod, **{ANNOTATION_ALLOCATED: "true"}))
    cache.pod_event("MODIFIED", _with(pod, **{ANNOTATION_ALLOCATED: "true"}))
    assert _grants_held(cache, "ns/p")
    assert counting.checks == 1  # the later events found the annotation remembered


def test_a_remembered_signature_counts_only_for_the_same_annotation_and_pod():
    key = Ed25519PrivateKey.generate()
    cache, counting = _cache_with_node(key, gpus=4)
    node = make_node("n1", gpus=4)
    pod = _signed_pod(key, node)
    cache.pod_event("ADDED", pod)
    assert _grants_held(cache, "ns/p")
    value = pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]
    # Pods with no trusted view yet: a rejected value counts nothing for them (a pod that had one keeps
    # it, which would hide whether the memo passed the value).
    forged_pod = _signed_pod(key, node, name="f")
    forged = json.loads(forged_pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
    forged["signature"] = forged["signature"][::-1]  # the same document, another signature
    forged_pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] = json.dumps(forged)
    for event in ("ADDED", "MODIFIED"):  # a failed check is not remembered as a pass
        cache.pod_event(event, forged_pod)
        assert not _grants_held(cache, "ns/f")
    cache.pod_event("MODIFIED", pod)
    assert _grants_held(cache, "ns/p")
    other_key = _signed_pod(Ed25519PrivateKey.generate(), node, name="o")  # signed by another key
    cache.pod_event("ADDED", other_key)
    assert not _grants_held(cache, "ns/o")
    copied = _signed_pod(key, node, name="q")  # another pod carrying p's annotation, for p's UID
    copied["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] = value
    cache.pod_event("ADDED", copied)
    assert not _grants_held(cache, "ns/q")
    # p, the forged value twice; the other key's names a key not trusted (refused with no check); p's
    # second time, q's copy: none
    assert counting.checks == 3


def test_the_remembered_signatures_are_bounded_oldest_first(monkeypatch):
    monkeypatch.setattr(extender.cache, "MAX_VERIFIED", 2)
    key = Ed25519PrivateKey.generate()
    cache, counting = _cache_with_node(key, gpus=4)
    node = make_node("n1", gpus=4)
    pods = [_signed_pod(key, node, name=f"p{i}") for i in range(5)]
    for pod in pods:
        cache.pod_event("ADDED", pod)
    assert counting.checks == 5
    cache.pod_event("MODIFIED", pods[-1])  # the newest is still remembered
    assert counting.checks == 5
    cache.pod_event("MODIFIED", pods[0])  # the oldest was let go: checked again
    assert counting.checks == 6
    assert all(_grants_held(cache, f"ns/p{i}") for i in range(5))


def test_a_bind_s_own_assignment_is_not_checked_again_when_its_watch_event_arrives(tmp_path):
    with api_server(tmp_path, mps_nodes(1)) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False)
        try:
            counting = CountingKey(ext.cache.public_key)
            ext.cache.public_key = counting
            pod = create(srv, gpu_pod("p", {"nvidia.com/mps-core": 25, "nvidia.com/mps-memory": 2}))
            assert post(ext.url, "bind", bind_args(pod, "gpu-0"))[1] == {"Error": ""}
            poll_until(lambda: ext.cache.bound_to("default/p"), what="the bind's watch event", timeout_s=60)
            assert _grants_held(ext.cache, "default/p")
            assert counting.checks == 0  # the replica trusted what it had just signed
        finally:
            ext.stop()


def test_prioritize_after_another_pods_filter_scores_the_names_it_was_given():
    rng = random.Random(8)
    nodes = _nodes(rng, 12)
    ctx = PolicyContext(shapes=FragmentationModel(SHAPES), rng=random.Random(0))
    verbs = _verbs_on(nodes, ctx)
    names = [n.name for n in nodes]
    for _ in range(2):  # the second filter of each list finds it kept
        verbs.filter(json.dumps({"Pod": _pod(100, 100), "NodeNames": names}).encode())
    a, b = _pod(1, 100), _pod(2, 100)  # one shape: whole-GPU shares
    fits_a = json.loads(verbs.filter(json.dumps({"Pod": a, "NodeNames": names}).encode()))["NodeNames"]
    shape = verbs._request(a)
    for node in nodes[:6]:  # fill nodes that fit A, so that B's filter moves the kept answers on
        for i in range(8):
            other = simple_request(shape.asks[0], shape.cpu_milli, shape.memory_bytes, name=f"ns/x{i}{node.name}")
            if fit.node_fit(other, node) is None:
                with verbs.cache.lock:
                    node.assume(choose_gpus(other, node, None, ctx))
    fits_b = json.loads(verbs.filter(json.dumps({"Pod": b, "NodeNames": names}).encode()))["NodeNames"]
    assert fits_b != fits_a
    scores = json.loads(verbs.prioritize(json.dumps({"Pod": a, "NodeNames": fits_a}).encode()))
    assert [s["Host"] for s in scores] == fits_a
    assert [s["Score"] for s in scores] == _fresh_scores(verbs._request(a), nodes, fits_a, "fragmentation")
