"""What the fragmentation policy adds to FGD: GPUs a node's CPU and memory could not feed, and the
capacity of a GPU model that pods asking for that model need. ``fgd`` is the paper's rule alone."""

from __future__ import annotations

import random

import pytest
from extender_builders import make_node, pod
from test_policies_choose import top

from extender.placement.fragmentation import STRANDING_CPU_SHARE, FragmentationModel, TaskShape
from extender.placement import PolicyContext, choose_gpus, filter_nodes, prioritize
from extender.placement.policies import PACK_WEIGHT_CORES, _left_after
from simcluster.replay import replay
from tessera.podrequest import KIND_MPS, KIND_MPS_WHOLE, GpuAsk, ModelConstraint, pod_request
from simcluster.trace import NODE_LIST, default_trace_dir, load_nodes, load_tasks, workload_model

GIB = 1 << 30
WHOLE = GpuAsk(KIND_MPS, core=100)
T4_ONLY = ModelConstraint(((frozenset({"T4"}), frozenset()),))


def ctx_of(*shapes: tuple[TaskShape, int]) -> PolicyContext:
    return PolicyContext(shapes=FragmentationModel(shapes), rng=random.Random(1))


def test_stranded_is_idle_gpu_beyond_what_cpu_and_memory_can_feed():
    # Typical task: half a GPU with 4 CPUs and 8 GiB: 80 millicores and 8/50 GiB per GPU core.
    model = FragmentationModel([(TaskShape(4000, 8 * GIB, GpuAsk(KIND_MPS, core=50)), 3)])
    assert model.cpu_per_core == 80 and model.memory_per_core == 8 * GIB / 50
    assert model.stranded(100, 8000, 64 * GIB) == 0     # enough of both for a whole GPU
    # CPU counts at STRANDING_CPU_SHARE of the mean: 4 CPUs feed 4000 / (80 x share) cores.
    assert model.stranded(100, 4000, 64 * GIB) == pytest.approx(100 - 4000 / (80 * STRANDING_CPU_SHARE))
    assert model.stranded(100, 8000, 8 * GIB) == 50     # memory for half of it
    assert model.stranded(100, 0, 0) == 100
    # A workload without CPU or memory requests strands nothing.
    assert FragmentationModel([(TaskShape(0, 0, WHOLE), 1)]).stranded(400, 0, 0) == 0


def test_reserved_share_is_the_weight_of_shapes_that_accept_the_model_by_name():
    model = FragmentationModel([(TaskShape(0, 0, WHOLE), 3), (TaskShape(0, 0, WHOLE, T4_ONLY), 1),
                                (TaskShape(0, 0, None), 4)])
    assert model.reserved_share("T4") == 1 / 8
    assert model.reserved_share("G2") == 0


def test_a_cpu_hungry_pod_goes_where_it_leaves_no_gpu_without_cpu():
    # Typical task: one GPU and 4 CPUs. On "lean" (4 GPUs, 12 CPUs) an 8-CPU pod leaves 3 idle GPUs
    # and 4 CPUs: one typical task still fits, so FGD sees no growth, but two of those GPUs can no
    # longer get CPU. On "rich" (64 CPUs) nothing is stranded.
    lean, rich = make_node("lean", gpus=4, cpu=12000), make_node("rich", gpus=4, cpu=64000)
    ctx = ctx_of((TaskShape(4000, 0, WHOLE), 1))
    r = pod_request(pod({"nvidia.com/mps-core": "100", "cpu": "8"}))
    model = ctx.fragmentation_model()
    assert model.best_choice(r, lean)[0] == model.best_choice(r, rich)[0] == 0
    assert top(prioritize(r, [lean, rich], "fgd", ctx)) == ["lean"]           # FGD: tie, binpack
    assert top(prioritize(r, [lean, rich], "fragmentation", ctx)) == ["rich"]


def test_a_cpu_heavy_pod_leaves_the_node_that_8_gpu_pods_asking_120_cpus_need():
    # Typical task: one GPU and 10 CPUs, and (rarely) 8 whole GPUs with 120 CPUs, which only "big"
    # (8 GPUs, 128 CPUs) can host. A 34-CPU pod on "lean" (4 GPUs, 64 CPUs) leaves 10 CPUs per idle
    # GPU, a typical task's own need, a little under the workload's mean per GPU: counting those GPUs
    # as stranded at the full mean sent the pod to "big", and the next 8-GPU pod found no node (the
    # multigpu20 and default lists lost such pods from 75 % arrival on).
    lean, big = make_node("lean", gpus=4, cpu=64000), make_node("big", gpus=8, cpu=128000)
    ctx = ctx_of((TaskShape(10000, 0, WHOLE), 90), (TaskShape(120000, 0, GpuAsk(KIND_MPS_WHOLE, count=8)), 1))
    r = pod_request(pod({"nvidia.com/mps-core": "100", "cpu": "34"}))
    assert top(prioritize(r, [lean, big], "fragmentation", ctx)) == ["lean"]
    lean.assume(choose_gpus(r, lean, "fragmentation", ctx))
    eight = pod_request(pod({"nvidia.com/mps-core": "800", "cpu": "120"}))
    assert filter_nodes(eight, [lean, big]).fits == ["big"]


def test_a_pod_that_takes_any_model_leaves_the_one_others_ask_for():
    # One task in 20 asks for a T4 by name; "t4" (the only T4 GPU, half of the cluster's) would be
    # packed full by the pod, "g2" is empty. The pull toward packing outweighs FGD's own preference for
    # g2 (5 cores: the T4 task's fragment there shrinks); what the pod would take of T4, scarce for
    # the tasks that can only use it, tips it.
    t4 = make_node("t4", gpus=1, model="T4", cpu=4000, memory_gib=8)
    g2 = make_node("g2", gpus=1, model="G2")
    ctx = ctx_of((TaskShape(0, 0, WHOLE), 19), (TaskShape(0, 0, WHOLE, T4_ONLY), 1))
    r = pod_request(pod({"nvidia.com/mps-core": "100", "cpu": "4", "memory": "8Gi"}))
    model = ctx.fragmentation_model()
    fgd_prefers_g2_by = (model.best_choice(r, t4)[0] - model.best_choice(r, g2)[0]) / model.total_weight
    packing_prefers_t4_by = PACK_WEIGHT_CORES * (_left_after(r, g2) - _left_after(r, t4))
    assert 0 < fgd_prefers_g2_by < packing_prefers_t4_by
    assert top(prioritize(r, [t4, g2], "fragmentation", ctx)) == ["g2"]


TRACE = default_trace_dir()


@pytest.mark.skipif(not (TRACE / NODE_LIST).is_file(), reason="the trace is not checked out beside")
@pytest.mark.parametrize("pod_list", ["default", "gpuspec10"])
def test_fragmentation_allocates_more_than_fgd_on_a_slice_of_the_trace(pod_list):
    tasks = load_tasks(TRACE, pod_list)
    model, nodes = workload_model(tasks), load_nodes(TRACE)[::25]  # 49 nodes of every model
    for seed in (1, 2, 3):
        fgd, ours = (replay([n.copy() for n in nodes], tasks, p, seed, [130], model).at(130).allocated
                     for p in ("fgd", "fragmentation"))
        assert ours > fgd, (pod_list, seed, ours, fgd)
