"""Which nodes a pod fits on, and for the others a reason that says whether preemption could help."""

from __future__ import annotations

from extender_builders import hold, make_node, pod

from extender.placement.fit import gpu_options, node_fit
from extender.placement import filter_nodes
from tessera.podrequest import pod_request


def req(limits, **kw):
    return pod_request(pod(limits, **kw))


def test_mps_share_needs_core_and_memory_on_one_gpu():
    node = make_node(gpus=2, gib=16)
    hold(node, 0, 60)
    hold(node, 1, 30, gib=14)  # GPU 1: 70 % cores free but only 2 GiB
    assert node_fit(req({"nvidia.com/mps-core": "40", "nvidia.com/mps-memory": "6"}), node) is None
    assert gpu_options(req({"nvidia.com/mps-core": "40", "nvidia.com/mps-memory": "6"}).asks[0], node) == [0]
    misfit = node_fit(req({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}), node)
    assert misfit.reason == "node(s) didn't have a GPU with 50 mps-core and 8 GiB free"
    assert not misfit.unresolvable


def test_whole_mps_gpus_fit_only_where_their_memory_is_that_much():
    node = make_node(gpus=2, gib=16)
    assert node_fit(req({"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "32"}), node) is None
    misfit = node_fit(req({"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "40"}), node)
    assert misfit.unresolvable and misfit.reason == "node(s) had no 2 GPUs with 40 GiB of memory together"


def test_unresolvable_reasons():
    t4 = make_node("t4", gpus=2, gib=16, model="T4")
    excl = make_node("ex", gpus=2, mode="exclusive")
    cases = [
        (req({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "20"}), t4,
         "node(s) had no GPU with 20 GiB of memory"),
        (req({"nvidia.com/mps-core": "400"}), t4, "node(s) had fewer than 4 GPUs in mps mode"),
        (req({"nvidia.com/mps-core": "50"}), excl, "node(s) had no GPU in mps mode"),
        (req({"nvidia.com/mig-1g.10gb": "1"}), t4, "node(s) had no MIG 1g.10gb instance"),
        (req({"nvidia.com/gpu.shared": "1"}), t4, "node(s) had no GPU in timeslice mode"),
        (req({"cpu": "100"}), t4, "Insufficient cpu"),
        (req({"memory": "1Ti"}), t4, "Insufficient memory"),
        (req({"nvidia.com/gpu": "1"}, affinity={"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A10"]}]}]}), excl,
         "node(s) didn't have the GPU model the pod asks for (nvidia.com/gpu.product In [A10])"),
    ]
    for request, node, reason in cases:
        misfit = node_fit(request, node)
        assert misfit is not None and misfit.reason == reason and misfit.unresolvable, (reason, misfit)


def test_occupied_is_resolvable():
    node = make_node(gpus=2, cpu=8000)
    hold(node, 0, 10)
    misfit = node_fit(req({"nvidia.com/mps-core": "200"}), node)
    assert misfit.reason == "node(s) didn't have 2 free whole mps GPUs" and not misfit.unresolvable
    assert node_fit(req({"nvidia.com/mps-core": "100"}), node) is None  # GPU 1 is still whole
    other = make_node("busy", gpus=1, cpu=8000)
    hold(other, 0, 1)
    from extender.placement.grants import Placement
    other.assume(Placement("cpu-hog", "busy", (), cpu_milli=6000))
    misfit = node_fit(req({"cpu": "4"}), other)
    assert misfit.reason == "Insufficient cpu" and not misfit.unresolvable


def test_unhealthy_and_draining_gpus_take_no_grants():
    node = make_node(gpus=2, unhealthy=(0,), pending=(1,))
    misfit = node_fit(req({"nvidia.com/mps-core": "10"}), node)
    assert misfit.unresolvable and "no healthy GPU in mps mode" in misfit.reason
    half = make_node(gpus=2, unhealthy=(0,))
    assert gpu_options(req({"nvidia.com/mps-core": "10"}).asks[0], half) == [1]
    assert node_fit(req({"nvidia.com/mps-core": "200"}), half).reason == "node(s) had fewer than 2 GPUs in mps mode"


def test_exclusive_mig_and_timeslice_counts():
    excl = make_node("ex", gpus=2, mode="exclusive")
    assert node_fit(req({"nvidia.com/gpu": "2"}), excl) is None
    mig = make_node("mig", gpus=1, mode="mig", mig=("1g.10gb", "1g.10gb", "2g.20gb"))
    assert node_fit(req({"nvidia.com/mig-1g.10gb": "2"}), mig) is None
    assert node_fit(req({"nvidia.com/mig-1g.10gb": "3"}), mig).reason == \
        "node(s) had fewer than 3 MIG 1g.10gb instances"
    ts = make_node("ts", gpus=1, mode="timeslice", replicas=4)
    assert node_fit(req({"nvidia.com/gpu.shared": "4"}), ts) is None
    assert node_fit(req({"nvidia.com/gpu.shared": "5"}), ts).unresolvable


def test_containers_of_one_pod_fit_together():
    node = make_node(gpus=1)
    hold(node, 0, 40)
    both = pod_request(pod({"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"},
                           {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"}))
    assert node_fit(both, node) is None
    too_much = pod_request(pod({"nvidia.com/mps-core": "40", "nvidia.com/mps-memory": "4"},
                               {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"}))
    misfit = node_fit(too_much, node)
    assert misfit is not None and "with the pod's other containers placed" in misfit.reason


def test_filter_splits_nodes_by_reason():
    a, b, c = make_node("a"), make_node("b"), make_node("c", mode="exclusive")
    hold(b, 0, 80)
    hold(b, 1, 80)
    result = filter_nodes(req({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}), [a, b, c])
    fits, failed, unresolvable = result
    assert fits == ["a"]
    assert failed == {"b": "node(s) didn't have a GPU with 50 mps-core and 8 GiB free"}
    assert unresolvable == {"c": "node(s) had no GPU in mps mode"}


def test_cached_fit_follows_changes():
    node = make_node(gpus=1)
    r = req({"nvidia.com/mps-core": "60", "nvidia.com/mps-memory": "4"})
    assert node_fit(r, node) is None
    hold(node, 0, 50, pod="x")
    assert node_fit(r, node) is not None
    node.release("x")
    assert node_fit(r, node) is None


def test_no_reason_carries_a_percent_sign():
    """kube-scheduler hands the extender's reasons to its event recorder as a format string: a ``%`` in
    them reached ``kubectl describe`` mangled (``50%!c(MISSING)ores``; seen on the real tier)."""
    full = make_node("full", gpus=2, gib=16)
    hold(full, 0, 80)
    hold(full, 1, 80)
    asks = [{"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}, {"nvidia.com/mps-core": "50"},
            {"nvidia.com/mps-core": "400"}, {"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "40"},
            {"nvidia.com/gpu": "3"}, {"nvidia.com/gpu.shared": "9"}, {"nvidia.com/mig-1g.10gb": "1"}]
    nodes = [full, make_node("ex", gpus=2, mode="exclusive"), make_node("ts", gpus=1, mode="timeslice")]
    reasons = [m.reason for a in asks for n in nodes if (m := node_fit(req(a), n)) is not None]
    assert len(reasons) >= len(asks)
    assert [r for r in reasons if "%" in r] == []
