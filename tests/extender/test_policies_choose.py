"""Each policy picks what it says: node scores 0..10 and the GPU on the chosen node."""

from __future__ import annotations

import random

import pytest
from extender_builders import hold, make_node, pod

from extender.placement.fragmentation import FragmentationModel, TaskShape
from extender.placement.grants import ContainerPlacement, Placement
from extender.placement import POLICIES, PlacementError, PolicyContext, choose_gpus, prioritize
from tessera.podrequest import KIND_MPS, GpuAsk, pod_request


def share(core: int, gib: int | None = None, **kw):
    limits = {"nvidia.com/mps-core": str(core)}
    if gib is not None:
        limits["nvidia.com/mps-memory"] = str(gib)
    return pod_request(pod(limits, **kw))


def half_shape_ctx() -> PolicyContext:
    """Typical tasks: all take half a GPU."""
    return PolicyContext(shapes=FragmentationModel([(TaskShape(0, 0, GpuAsk(KIND_MPS, core=50)), 1)]),
                         rng=random.Random(1))


def top(scores):
    best = max(s for _, s in scores)
    return sorted(n for n, s in scores if s == best)


def test_binpack_fills_the_fuller_node_and_gpu_spread_the_emptier():
    full, empty = make_node("full", gpus=2), make_node("empty", gpus=2)
    hold(full, 1, 50)
    r = share(20, 2)
    assert top(prioritize(r, [full, empty], "binpack")) == ["full"]
    assert top(prioritize(r, [full, empty], "spread")) == ["empty"]
    assert choose_gpus(r, full, "binpack").grants[0].gpu_index == 1
    assert choose_gpus(r, full, "spread").grants[0].gpu_index == 0


def test_gpu_level_policies_look_at_the_best_gpu():
    # a: one GPU 70 % used, one idle (node 35 % used); b: both GPUs 40 % used (node 40 % used)
    a, b = make_node("a", gpus=2), make_node("b", gpus=2)
    hold(a, 0, 70)
    hold(b, 0, 40)
    hold(b, 1, 40)
    r = share(20, 2)
    assert top(prioritize(r, [a, b], "binpack")) == ["b"]       # the fuller node
    assert top(prioritize(r, [a, b], "binpack-gpu")) == ["a"]   # the fuller GPU
    assert top(prioritize(r, [a, b], "spread")) == ["a"]
    assert top(prioritize(r, [a, b], "spread-gpu")) == ["a"]    # the idle GPU
    assert choose_gpus(r, a, "binpack-gpu").grants[0].gpu_index == 0
    assert choose_gpus(r, a, "spread-gpu").grants[0].gpu_index == 1


def test_fragmentation_avoids_leaving_an_unusable_sliver():
    # Typical tasks take 50 %. GPU 0 has 60 % free, GPU 1 70 %. A 20 % pod on GPU 0 leaves 40 %
    # there, which no typical task can use (fragment 40); on GPU 1 it leaves 50 %, usable (fragment 0).
    node = make_node(gpus=2)
    hold(node, 0, 40)
    hold(node, 1, 30)
    ctx = half_shape_ctx()
    r = share(20, 2)
    assert ctx.fragmentation_model().best_choice(r, node) == (0, (1,))
    assert choose_gpus(r, node, "fragmentation", ctx).grants[0].gpu_index == 1
    assert choose_gpus(r, node, "binpack").grants[0].gpu_index == 0


def test_fragmentation_by_hand_across_nodes():
    # The brief's example: GPUs with 30 % and 60 % free, typical shape 50 %. Fragment now: 30 (the
    # 30 % GPU). A 30 % pod on the 30 % GPU: fragment 0 (delta -30). On the 60 % GPU: 30 + 30 left,
    # neither fits a typical task: fragment 60 (delta +30).
    sliver, roomy = make_node("sliver", gpus=1), make_node("roomy", gpus=1)
    hold(sliver, 0, 70)
    hold(roomy, 0, 40)
    ctx = half_shape_ctx()
    model = ctx.fragmentation_model()
    assert model.node_fragment_cores(sliver) == 30 and model.node_fragment_cores(roomy) == 0
    r = share(30, 2)
    assert model.best_choice(r, sliver)[0] == -30
    assert model.best_choice(r, roomy)[0] == 30
    scores = dict(prioritize(r, [sliver, roomy], "fragmentation", ctx))
    assert scores == {"sliver": 10, "roomy": 0}


def test_fragmentation_equal_growth_goes_to_the_node_left_fullest_in_cpu_and_memory():
    # Same GPUs, same fragmentation growth; "busy" has most of its CPU and memory taken by other pods.
    busy, idle = make_node("busy", gpus=1, cpu=8000, memory_gib=32), make_node("idle", gpus=1, cpu=64000)
    ctx = half_shape_ctx()
    r = pod_request(pod({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8", "cpu": "4"}))
    model = ctx.fragmentation_model()
    assert model.best_choice(r, busy)[0] == model.best_choice(r, idle)[0]
    assert top(prioritize(r, [busy, idle], "fragmentation", ctx)) == ["busy"]


def test_fragmentation_growth_outweighs_the_pull_toward_packing():
    # "packed" is nearly full in CPU and memory, but the pod would leave an unusable 30 % sliver there
    # (growth 30 cores); on "roomy" it leaves a usable half GPU (growth 0): fragmentation wins.
    packed, roomy = make_node("packed", gpus=1, cpu=4500, memory_gib=10), make_node("roomy", gpus=1)
    hold(packed, 0, 20)
    ctx = half_shape_ctx()
    r = pod_request(pod({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8", "cpu": "4"}))
    model = ctx.fragmentation_model()
    assert model.best_choice(r, packed)[0] > model.best_choice(r, roomy)[0]
    assert top(prioritize(r, [packed, roomy], "fragmentation", ctx)) == ["roomy"]


def test_spread_workload_keeps_replicas_apart():
    a, b = make_node("a", gpus=2), make_node("b", gpus=2)
    r = share(10, 1, owner="web")
    first = choose_gpus(r, a, "spread-workload")
    a.assume(first)
    assert top(prioritize(share(10, 1, owner="web", name="p2"), [a, b], "spread-workload")) == ["b"]
    a2 = choose_gpus(share(10, 1, owner="web", name="p3"), a, "spread-workload")
    assert a2.grants[0].gpu_index != first.grants[0].gpu_index
    # another workload does not mind
    assert top(prioritize(share(10, 1, owner="db"), [a, b], "spread-workload")) == ["a"]


def test_best_fit_takes_the_node_with_least_left():
    tight, loose = make_node("tight", gpus=2, cpu=16000), make_node("loose", gpus=2, cpu=16000)
    tight.assume(Placement("cpu-job", "tight", (), cpu_milli=12000))
    hold(loose, 0, 30)  # loose has more GPU used, but far more CPU left
    r = pod_request(pod({"nvidia.com/mps-core": "50", "cpu": "2"}))
    assert top(prioritize(r, [tight, loose], "best-fit")) == ["tight"]
    assert choose_gpus(r, loose, "best-fit").grants[0].gpu_index == 0  # the tighter GPU


def test_random_is_seeded_and_picks_any_fitting_node():
    nodes = [make_node(f"n{i}", gpus=1) for i in range(6)]
    picks = {top(prioritize(share(10, 1), nodes, "random", PolicyContext(rng=random.Random(s))))[0]
             for s in range(40)}
    assert len(picks) > 3
    again = [prioritize(share(10, 1), nodes, "random", PolicyContext(rng=random.Random(7))) for _ in range(2)]
    assert again[0] == again[1]


@pytest.mark.parametrize("policy", POLICIES)
def test_scores_are_in_kube_schedulers_range_and_misfits_score_zero(policy):
    nodes = [make_node(f"n{i}", gpus=2) for i in range(5)]
    for i, n in enumerate(nodes[:4]):
        for _ in range(i):
            hold(n, i % 2, 15)
    hold(nodes[4], 0, 85)
    hold(nodes[4], 1, 85)
    scores = prioritize(share(30, 4), nodes, policy, half_shape_ctx())
    assert [n for n, _ in scores] == [n.name for n in nodes]
    assert all(0 <= s <= 10 and isinstance(s, int) for _, s in scores)
    assert dict(scores)["n4"] == 0
    assert max(s for _, s in scores) == 10


def test_placement_has_the_architecture_device_ids():
    node = make_node("n", gpus=2, gib=16)
    hold(node, 0, 30, pod="x")
    p = choose_gpus(share(25, 3), node, "binpack")
    g = p.grants[0]
    assert (g.gpu_uuid, g.core, g.memory_gib) == ("GPU-n-0", 25, 3)
    ids = p.containers[0].device_ids
    assert ids[0] == "GPU-n-0::core::30" and ids[24] == "GPU-n-0::core::54"   # units after the held ones
    assert ids[25:] == ("GPU-n-0::mem::4", "GPU-n-0::mem::5", "GPU-n-0::mem::6")
    assert all(len(i) <= 63 for i in ids)
    node.assume(p)
    assert node.gpus[0].core_free == 45 and node.gpus[0].mem_free == 16 - 4 - 3
    whole = choose_gpus(pod_request(pod({"nvidia.com/mps-core": "100"})), node, "binpack")
    assert whole.grants[0].gpu_index == 1 and whole.grants[0].memory_gib == 16
    excl = make_node("e", gpus=2, mode="exclusive")
    assert choose_gpus(pod_request(pod({"nvidia.com/gpu": "2"})), excl).containers[0].device_ids == \
        ("GPU-e-0", "GPU-e-1")
    mig = make_node("m", gpus=1, mode="mig", mig=("1g.10gb", "2g.20gb"))
    assert choose_gpus(pod_request(pod({"nvidia.com/mig-2g.20gb": "1"})), mig).containers[0].device_ids == \
        ("MIG-m-0-1",)
    ts = make_node("t", gpus=1, mode="timeslice")
    assert choose_gpus(pod_request(pod({"nvidia.com/gpu.shared": "2"})), ts).containers[0].device_ids == \
        ("GPU-t-0::ts::0", "GPU-t-0::ts::1")


def test_two_containers_never_share_units():
    node = make_node("n", gpus=1)
    p = choose_gpus(pod_request(pod({"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "2"},
                                    {"nvidia.com/mps-core": "20", "nvidia.com/mps-memory": "2"})), node, "binpack")
    ids = [set(c.device_ids) for c in p.containers]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    node.assume(p)
    assert node.gpus[0].core_free == 50
    node.release(p.pod)
    assert node.gpus[0].core_free == 100 and node.cpu_free == node.cpu_alloc


def test_choose_refuses_a_node_that_does_not_fit():
    node = make_node("n", gpus=1)
    hold(node, 0, 90)
    with pytest.raises(PlacementError, match="didn't have a GPU with 50 mps-core"):
        choose_gpus(share(50, 1), node)


def test_pod_annotation_picks_the_policy():
    full, empty = make_node("full", gpus=1), make_node("empty", gpus=1)
    hold(full, 0, 50)
    p = pod({"nvidia.com/mps-core": "10"})
    p["metadata"]["annotations"] = {"tessera.io/policy": "spread"}
    assert top(prioritize(pod_request(p), [full, empty])) == ["empty"]
    p["metadata"]["annotations"] = {"tessera.io/policy": "fastest"}
    with pytest.raises(PlacementError, match="policy 'fastest' is not one of"):
        prioritize(pod_request(p), [full, empty])


def test_held_units_are_never_granted_twice():
    node = make_node("n", gpus=1)
    a = choose_gpus(share(40, 4, name="a"), node)
    node.assume(a)
    b = choose_gpus(share(40, 4, name="b"), node)
    assert not set(a.containers[0].device_ids) & set(b.containers[0].device_ids)
    from extender.placement.nodestate import StateError
    with pytest.raises(StateError):
        node.assume(Placement("c", "n", (ContainerPlacement("c", a.grants),)))
    assert node.gpus[0].core_free == 60  # the refused grant changed nothing
