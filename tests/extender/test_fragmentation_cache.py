"""FGD's measure: the cached, memoized answers equal a fresh computation from the definition after any
sequence of placements and releases; the fleet's incremental filter and scores equal a full pass."""

from __future__ import annotations

import random

from extender_builders import make_node

from extender.placement.fit import gpu_options, make_ask_grants, node_fit
from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel, TaskShape
from extender.placement.grants import ContainerPlacement, Placement
from extender.placement import PolicyContext, filter_nodes, prioritize
from tessera.podrequest import KIND_MPS, KIND_MPS_WHOLE, GpuAsk, ModelConstraint, simple_request

SHAPES = [
    (TaskShape(4000, 8 << 30, GpuAsk(KIND_MPS, core=50)), 5),
    (TaskShape(8000, 16 << 30, GpuAsk(KIND_MPS, core=25, memory_gib=2)), 3),
    (TaskShape(12000, 32 << 30, GpuAsk(KIND_MPS, core=100)), 4),
    (TaskShape(24000, 64 << 30, GpuAsk(KIND_MPS_WHOLE, count=2)), 1),
    (TaskShape(16000, 32 << 30, None), 2),
    (TaskShape(2000, 4 << 30, GpuAsk(KIND_MPS, core=80), ModelConstraint(((frozenset({"A10"}), frozenset()),))), 2),
]


def reference_fragment(node, shapes) -> float:
    """FGD's fragment, straight from the definition, in cores."""
    gpus = [g for g in node.gpus if g.open and g.mode == "mps"]
    idle = sum(g.core_free for g in gpus)
    total = 0.0
    weight = sum(w for _, w in shapes)
    for shape, w in shapes:
        ask = shape.ask
        runs = shape.cpu_milli <= node.cpu_free and shape.memory_bytes <= node.mem_free and \
            (ask is None or shape.models is None or shape.models.allows(node.product))
        if ask is None:
            frag = 0 if runs else idle
        elif ask.kind == KIND_MPS:
            usable = [g for g in gpus if g.core_free >= ask.core and g.mem_free >= ask.memory_on(g.memory_gib)]
            frag = sum(g.core_free for g in gpus if g not in usable) if runs and usable else idle
        else:
            whole = [g for g in gpus if g.core_free == 100]
            frag = sum(g.core_free for g in gpus if g.core_free < 100) if runs and len(whole) >= ask.count else idle
        total += w * frag
    return total / weight


def random_request(rng):
    if rng.random() < 0.15:
        return simple_request(GpuAsk(KIND_MPS_WHOLE, count=2), cpu_milli=rng.choice([4000, 20000]))
    return simple_request(GpuAsk(KIND_MPS, core=rng.choice([10, 25, 30, 50, 75, 100])),
                          cpu_milli=rng.choice([1000, 6000, 12000]), memory_bytes=rng.choice([1, 20]) << 30)


def churn(nodes, rng, steps):
    """Random placements and releases, as an extender would make them."""
    serial = 0
    for _ in range(steps):
        node = rng.choice(nodes)
        if node.pods and rng.random() < 0.3:
            node.release(rng.choice(sorted(node.pods)))
            continue
        req = random_request(rng)
        if node_fit(req, node) is not None:
            continue
        ask = req.asks[0]
        options = gpu_options(ask, node)
        chosen = tuple(rng.sample(options, ask.count))
        serial += 1
        node.assume(Placement(f"p{serial}", node.name, (ContainerPlacement("c", make_ask_grants(ask, node, chosen)),),
                              cpu_milli=req.cpu_milli, memory_bytes=req.memory_bytes))
        yield node


def test_cached_fragmentation_equals_fresh_computation():
    rng = random.Random(3)
    nodes = [make_node(f"n{i}", gpus=rng.choice([1, 2, 4, 8]), gib=rng.choice([16, 24]),
                       model=rng.choice(["T4", "A10"]), cpu=rng.choice([32000, 64000]), memory_gib=128)
             for i in range(12)]
    model = FragmentationModel(SHAPES)
    for step, _ in enumerate(churn(nodes, rng, 600)):
        if step % 7:
            continue
        for node in nodes:
            assert model.node_fragment_cores(node) == reference_fragment(node, SHAPES)
            assert FragmentationModel(SHAPES).node_fragment_cores(node.copy()) == model.node_fragment_cores(node)


def test_best_choice_is_the_least_fragmenting_placement():
    rng = random.Random(5)
    nodes = [make_node(f"n{i}", gpus=4, gib=16, cpu=48000, memory_gib=96) for i in range(6)]
    model = FragmentationModel(SHAPES)
    list(churn(nodes, rng, 60))
    for node in nodes:
        for _ in range(5):
            req = random_request(rng)
            if node_fit(req, node) is not None:
                assert model.best_choice(req, node) is None
                continue
            delta, chosen = model.best_choice(req, node)
            before = reference_fragment(node, SHAPES)
            outcomes = []
            ask = req.asks[0]
            for i in set(gpu_options(ask, node)):
                trial = node.copy()
                idx = (i,) if ask.count == 1 else tuple(gpu_options(ask, node)[:ask.count])
                trial.assume(Placement("t", node.name, (ContainerPlacement("c", make_ask_grants(ask, trial, idx)),),
                                       cpu_milli=req.cpu_milli, memory_bytes=req.memory_bytes))
                outcomes.append(reference_fragment(trial, SHAPES) - before)
            total_weight = sum(w for _, w in SHAPES)
            assert abs(delta / total_weight - min(outcomes)) < 1e-9


def test_fleet_views_equal_a_full_pass_after_changes():
    rng = random.Random(11)
    nodes = [make_node(f"n{i}", gpus=rng.choice([2, 8]), cpu=64000) for i in range(20)]
    fleet = Fleet(nodes)
    ctx = PolicyContext(shapes=FragmentationModel(SHAPES), rng=random.Random(0))
    requests = [random_request(rng) for _ in range(8)]
    for step, _ in enumerate(churn(nodes, rng, 300)):
        req = requests[step % len(requests)]
        by_fleet = filter_nodes(req, fleet)
        plain = filter_nodes(req, [n.copy() for n in nodes])
        assert sorted(by_fleet.fits) == sorted(plain.fits)
        assert by_fleet.failed == plain.failed and by_fleet.unresolvable == plain.unresolvable
        for policy in ("fragmentation", "binpack", "spread-gpu"):
            fresh_ctx = PolicyContext(shapes=FragmentationModel(SHAPES))
            assert dict(prioritize(req, fleet, policy, ctx, names=by_fleet.fits)) == \
                dict(prioritize(req, [n.copy() for n in nodes if n.name in by_fleet.fits], policy, fresh_ctx))


def test_shapes_are_learned_from_a_sliding_window():
    from extender.placement.fragmentation import ShapeBook

    book = ShapeBook(window=4, refresh=2)
    assert book.model().total_weight == 0  # nothing seen: every delta is 0, binpack breaks the tie
    half = simple_request(GpuAsk(KIND_MPS, core=50))
    quarter = simple_request(GpuAsk(KIND_MPS, core=25))
    for r in (half, half, half, quarter):
        book.observe(r)
    first = book.model()
    assert sorted((s.ask.core, w) for s, w in first.shapes) == [(25, 1), (50, 3)]
    book.observe(quarter)
    assert book.model() is first  # rebuilt only after `refresh` new pods
    book.observe(quarter)
    assert sorted((s.ask.core, w) for s, w in book.model().shapes) == [(25, 3), (50, 1)]  # the oldest left
    assert book.model().version != first.version


def test_a_model_asked_for_before_any_pod_is_replaced_at_the_first_pod():
    """The extender scores before it has seen a pod (and its metrics are scraped): the first pod seen
    must give the model a shape at once, not ``refresh`` pods later."""
    from extender.placement.fragmentation import ShapeBook

    book = ShapeBook(window=1000)          # refresh every 100 pods
    assert book.model().total_weight == 0
    book.observe(simple_request(GpuAsk(KIND_MPS, core=50)))
    assert [(s.ask.core, w) for s, w in book.model().shapes] == [(50, 1)]
