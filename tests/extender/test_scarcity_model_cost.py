"""The fragmentation policy's model cost (``extender.placement.scarcity``): what a pod takes of a GPU
model is charged by how scarce that model is for the pods that can only use it, not by how much of
the workload names it."""

from __future__ import annotations

import random

from extender_builders import hold, make_node, pod
from test_policies_choose import top

from extender.placement import PolicyContext, prioritize
from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel, TaskShape
from extender.placement.scarcity import idle_by_product, pressures
from extender.placement.scoring import node_scores
from tessera.podrequest import KIND_MPS, GpuAsk, ModelConstraint, pod_request

WHOLE = GpuAsk(KIND_MPS, core=100)


def only(*models: str) -> ModelConstraint:
    return ModelConstraint(((frozenset(models), frozenset()),))


def test_pressure_is_named_demand_against_the_free_capacity_it_can_use():
    # A quarter of the GPU cores asked name T4, a quarter G2; the cluster has 200 idle cores of T4,
    # 1800 of G2: until it is full, T4 pods will ask 0.25 x 2000 = 500 cores of 200 (pressure capped at
    # 1), G2 pods 500 of 1800.
    model = FragmentationModel([(TaskShape(0, 0, WHOLE), 2), (TaskShape(0, 0, WHOLE, only("T4")), 1),
                                (TaskShape(0, 0, WHOLE, only("G2")), 1)])
    p = pressures(model, {"T4": 200, "G2": 1800})
    assert p["T4"] == 1.0
    assert p["G2"] == 500 / 1800
    # Pods that accept either model spread their demand over both: 0.5 x 2000 / 2000 = 0.5 each.
    either = FragmentationModel([(TaskShape(0, 0, WHOLE), 1), (TaskShape(0, 0, WHOLE, only("T4", "G2")), 1)])
    assert pressures(either, {"T4": 200, "G2": 1800}) == {"T4": 0.5, "G2": 0.5}
    # Nobody names a model: no pressure anywhere; a model with nothing idle that pods need: full.
    assert pressures(FragmentationModel([(TaskShape(0, 0, WHOLE), 1)]), {"T4": 200}) == {"T4": 0.0}
    assert pressures(model, {"T4": 0, "G2": 1800})["T4"] == 1.0


def test_usable_idle_capacity_per_model_follows_the_fleet():
    # The workload brings 4 CPUs per GPU: a T4 node's idle GPUs count as far as its free CPU feeds them.
    model = FragmentationModel([(TaskShape(4000, 0, WHOLE), 1)])
    t4, g2 = make_node("t4", gpus=2, model="T4", cpu=64000), make_node("g2", gpus=4, model="G2", cpu=8000)
    fleet = Fleet([t4, g2])
    assert idle_by_product(fleet, model) == {"T4": 200, "G2": 200}  # 8 CPUs feed two of g2's four GPUs
    hold(t4, 0, 60)
    assert idle_by_product(fleet, model) == {"T4": 140, "G2": 200} == idle_by_product([t4, g2], model)
    fleet.remove("g2")
    assert idle_by_product(fleet, model) == {"T4": 140, "G2": 0}


def test_a_pod_that_takes_any_model_leaves_the_scarce_model_to_the_pods_that_need_it():
    # A third of the cores asked name T4 (2 GPUs idle), a third G2 (8 GPUs idle): the same named share,
    # so the share of the workload alone would charge both alike; T4 is the scarce one. The T4 node is
    # half used, so FGD and packing both pull a whole-GPU pod there.
    t4 = make_node("t4", gpus=3, model="T4", cpu=64000)
    hold(t4, 0, 100)
    g2 = make_node("g2", gpus=8, model="G2", cpu=64000)
    shapes = [(TaskShape(0, 0, WHOLE), 1), (TaskShape(0, 0, WHOLE, only("T4")), 1),
              (TaskShape(0, 0, WHOLE, only("G2")), 1)]
    ctx = PolicyContext(shapes=FragmentationModel(shapes), rng=random.Random(1))
    r = pod_request(pod({"nvidia.com/mps-core": "100"}))
    assert top(prioritize(r, [t4, g2], "fgd", ctx)) == ["t4"]
    assert top(prioritize(r, [t4, g2], "fragmentation", ctx)) == ["g2"]
    assert top(node_scores(r, Fleet([t4, g2]), ctx, policy="fragmentation").pairs()) == ["g2"]
    # A pod that can only use T4 still goes there.
    t4_pod = pod_request(pod({"nvidia.com/mps-core": "100"}, affinity={"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["T4"]}]}]}))
    assert t4_pod.models.allows("T4") and not t4_pod.models.allows("G2")
    assert top(prioritize(t4_pod, [t4, g2], "fragmentation", ctx)) == ["t4"]


def _any_pod_gap(ctx: PolicyContext, fleet: Fleet, request) -> float:
    """How far the T4 node's raw score for ``request`` stands below the G2 node's, on the fleet."""
    scores = node_scores(request, fleet, ctx, policy="fragmentation")
    raw = dict(zip(scores.names, (scores.distinct[i] for i in scores.ids)))
    return raw["g2"][0] - raw["t4a"][0]


def test_the_scarce_model_costs_more_as_its_pool_is_used_up_by_others():
    # The T4 node t4a never changes; another T4 node filling up leaves less T4 capacity for the pods
    # that can only use T4, so taking t4a's GPUs costs a pod that accepts any model more. Scores kept
    # from the earlier call must not hide that.
    t4a, t4b = make_node("t4a", gpus=4, model="T4", cpu=64000), make_node("t4b", gpus=4, model="T4", cpu=64000)
    g2 = make_node("g2", gpus=8, model="G2", cpu=64000)
    fleet = Fleet([t4a, t4b, g2])
    shapes = [(TaskShape(0, 0, WHOLE), 4), (TaskShape(0, 0, WHOLE, only("T4")), 1)]
    ctx = PolicyContext(shapes=FragmentationModel(shapes), rng=random.Random(1))
    r = pod_request(pod({"nvidia.com/mps-core": "100"}))
    before = _any_pod_gap(ctx, fleet, r)
    for gpu in range(4):
        hold(t4b, gpu, 100)
    after = _any_pod_gap(ctx, fleet, r)
    assert after > before
    # The same answer as scoring the nodes afresh.
    fresh = dict(prioritize(r, [t4a.copy(), t4b.copy(), g2.copy()], "fragmentation", ctx))
    assert fresh == dict(node_scores(r, fleet, ctx, policy="fragmentation").pairs())


def test_the_pressure_follows_the_share_of_the_workload_that_names_the_model():
    t4, g2 = make_node("t4", gpus=4, model="T4", cpu=64000), make_node("g2", gpus=8, model="G2", cpu=64000)
    fleet = Fleet([t4, g2])
    seen = []
    for named in (0, 1, 3):
        shapes = [(TaskShape(0, 0, WHOLE), 6)] + ([(TaskShape(0, 0, WHOLE, only("T4")), named)] if named else [])
        model = FragmentationModel(shapes)
        p = pressures(model, idle_by_product(fleet, model))
        assert p["G2"] == 0.0  # nobody names G2
        seen.append(p["T4"])
    assert seen[0] == 0.0 < seen[1] < seen[2]
