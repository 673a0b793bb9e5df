"""Placement policies, and two of the calls the extender's verbs make: ``filter_view`` (``filter_nodes``
for a list of nodes) and ``choose_gpus``; scores come from ``scoring.node_scores``.

Policies (config ``extender.policy``, per pod the annotation ``tessera.io/policy``):

- ``binpack`` / ``spread``: the node whose GPUs are most / least used after the pod lands (CPU use for
  a pod without GPUs), and on it the fullest / emptiest GPU that serves the pod.
- ``binpack-gpu`` / ``spread-gpu``: the node offering the fullest / emptiest single GPU for the pod;
  node load breaks ties.
- ``spread-workload``: pods of one workload (owner reference, or the configured label) on different
  nodes and GPUs where possible; then binpack.
- ``fragmentation`` (the default): the node and GPU where the pod costs least, in GPU cores: FGD's
  fragmentation growth, plus the growth of *stranded* capacity (idle GPU cores the node's CPU and
  memory could no longer feed at the workload's host resources per GPU core), plus what the pod
  takes of the capacity that pods naming the node's GPU model could use, at that model's pressure
  (``scarcity``: the demand that can only use the model against its free capacity, 0..1, times
  ``scarcity.SCARCITY_WEIGHT``), so a pod that accepts any model goes where it takes least from pods
  that have no choice; a small pull (``PACK_WEIGHT_CORES``) toward the node left fullest in CPU,
  memory and GPU together also breaks ties (binpacking over all three). Where the node's model is one
  that pods name, its raw score is a ``scarcity.Priced`` that scoring prices at the pressures of the
  call.
- ``fgd``: FGD as published (Weng et al., ATC 2023), fragmentation growth alone, ties to the node
  left fullest; the baseline the replay compares ``fragmentation`` with.
- ``best-fit``: the node with the least CPU, memory and GPU left after the pod lands, on its tightest
  GPU. ``random``: any node that fits, any GPU. These two are baselines for the replay.

Each policy computes a raw score per node (a tuple, higher is better; ``SCORERS``); ``scoring`` turns
raw scores into kube-scheduler's 0..10. The policy names are the core's (``tessera.policy_names``),
which the config checks against: the scorers here cover exactly those names.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from extender.placement.fleet import Fleet
from extender.placement.fit import Misfit, gpu_options, make_ask_grants, node_fit
from extender.placement.fragmentation import FragmentationModel, ShapeBook, idle_cores
from extender.placement.nodestate import NodeState
from extender.placement.scarcity import Priced, usable_taken
from extender.placement.grants import ContainerPlacement, Placement
from tessera.podrequest import GpuAsk, PodRequest
from tessera.policy_names import DEFAULT_POLICY, POLICIES

MODEL_POLICIES = ("fragmentation", "fgd")  # the policies that read the fragmentation model


# The fragmentation policy's pull toward packing, in cores of cost per unit of what a node has left
# (its free shares of CPU, memory and GPU summed, 0..3). With 3, a placement that costs up to ~3 cores
# more may win when it packs a node markedly fuller. Chosen on the Alibaba default trace before the
# stranding and model terms existed (seeds 42, 1-5, mean at 100 % / 130 % arrival): 0 (ties only)
# 94.81 / 95.03 %, 2: 94.97 / 95.17 %, 3: 95.06 / 95.25 %, 4: 95.04 / 95.24 %, 5: 95.00 / 95.19 %;
# re-checked with them (seeds 42, 43, 44, 1, 2, 3): 0: 95.74, 1: 95.78, 3: 95.84 % at 100 %.
PACK_WEIGHT_CORES = 3.0


class PlacementError(ValueError):
    """A pod that cannot be placed on the node asked for; the message says why."""


@dataclass
class PolicyContext:
    """What policies need beyond the pod and the nodes: the typical shapes (learned, or a fixed
    model), the random source (seeded in tests and replays), the cluster's default policy.

    Before any shape is learned, every fragmentation delta is 0 and the policy acts as binpack.
    """

    shapes: ShapeBook | FragmentationModel = field(default_factory=ShapeBook)
    rng: random.Random = field(default_factory=random.Random)
    default_policy: str = DEFAULT_POLICY

    def fragmentation_model(self) -> FragmentationModel:
        s = self.shapes
        return s if isinstance(s, FragmentationModel) else s.model()


class FilterResult(NamedTuple):
    """Nodes that fit, and for each other node why not: resolvable (``failed``: preemption could
    help) or ``unresolvable``."""

    fits: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


def filter_nodes(request: PodRequest, nodes: Fleet | Iterable[NodeState]) -> FilterResult:
    """Split the nodes into those where the pod fits now and those where it does not, with reasons.

    With a ``Fleet``, the answer for this request shape is kept and only nodes changed since the last
    call are checked again.
    """
    if isinstance(nodes, Fleet):
        return _filter_fleet(request, nodes)
    fits: list[str] = []
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    key = request.key
    missing = _MISSING
    for node in nodes:
        misfit = node.cache.get(key, missing)
        if misfit is missing:
            misfit = node_fit(request, node)
        if misfit is None:
            fits.append(node.name)
        elif misfit.unresolvable:
            unresolvable[node.name] = misfit.reason
        else:
            failed[node.name] = misfit.reason
    return FilterResult(fits, failed, unresolvable)


def _filter_fleet(request: PodRequest, fleet: Fleet) -> FilterResult:
    fits, failed, unresolvable = filter_view(request, fleet)
    return FilterResult(list(fits), dict(failed), dict(unresolvable))


def filter_view(request: PodRequest, fleet: Fleet) -> tuple[dict[str, None], dict[str, str], dict[str, str]]:
    """``filter_nodes`` on a fleet without copies: the fleet's own (fits, failed, unresolvable) for this
    request shape, brought up to date. Read them under the lock that guards the fleet; never change them."""
    view = fleet.view("filter|" + request.key)
    changed = fleet.changed_since(view["clock"])
    if changed is None:  # from scratch: once per group of nodes in one state, in C for the rest
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        ok: set[str] = set()
        for node, group in fleet.groups():
            misfit = node_fit(request, node)
            if misfit is None:
                ok.update(group)
            else:
                (unresolvable if misfit.unresolvable else failed).update(dict.fromkeys(group, misfit.reason))
        fits: dict[str, None] = dict.fromkeys(filter(ok.__contains__, fleet.names()))  # in fleet order
        view.update(fits=fits, failed=failed, unresolvable=unresolvable, clock=fleet.clock)
        return fits, failed, unresolvable
    else:
        fits, failed, unresolvable = view["fits"], view["failed"], view["unresolvable"]
        names = changed
    for name in names:
        fits.pop(name, None)
        failed.pop(name, None)
        unresolvable.pop(name, None)
        node = fleet.get(name)
        if node is None:
            continue
        misfit = node_fit(request, node)
        if misfit is None:
            fits[name] = None
        elif misfit.unresolvable:
            unresolvable[name] = misfit.reason
        else:
            failed[name] = misfit.reason
    view["clock"] = fleet.clock
    return fits, failed, unresolvable


_MISSING = Misfit("", False)


def resolve_policy(request: PodRequest, policy: str | None, ctx: PolicyContext) -> str:
    """The policy that applies: the argument, else the pod's annotation, else the cluster default."""
    name = policy or request.policy or ctx.default_policy
    if name not in POLICIES:
        raise PlacementError(f"policy {name!r} is not one of {', '.join(POLICIES)}")
    return name


def choose_gpus(request: PodRequest, node: NodeState, policy: str | None = None,
                ctx: PolicyContext | None = None) -> Placement:
    """The GPUs on ``node`` for each container, by policy; raises PlacementError if the pod does not fit."""
    ctx = ctx or PolicyContext()
    policy = resolve_policy(request, policy, ctx)
    misfit = node_fit(request, node)
    if misfit is not None:
        raise PlacementError(f"{request.name or 'pod'} does not fit on {node.name}: {misfit.reason}")
    with_ask = [(i, c) for i, c in enumerate(request.containers) if c.ask is not None]
    grants: dict[int, tuple] = {}
    if len(with_ask) == 1:
        i, c = with_ask[0]
        grants[i] = make_ask_grants(c.ask, node, _pick(policy, request, c.ask, node, ctx))
    elif with_ask:
        scratch = node.copy()
        for n, (i, c) in enumerate(sorted(with_ask, key=lambda ic: -ic[1].ask.cores)):
            chosen = _pick(policy, request, c.ask, scratch, ctx)
            grants[i] = make_ask_grants(c.ask, scratch, chosen)
            scratch.assume(Placement(f"\0choose{n}", node.name, (ContainerPlacement(c.name, grants[i]),)))
    containers = tuple(ContainerPlacement(c.name, grants.get(i, ())) for i, c in enumerate(request.containers))
    return Placement(pod=request.name, node=node.name, containers=containers, cpu_milli=request.cpu_milli,
                     memory_bytes=request.memory_bytes, workload=request.workload)


# -- GPU choice on a node ---------------------------------------------------------------------------

def _pick(policy: str, request: PodRequest, ask: GpuAsk, node: NodeState, ctx: PolicyContext) -> tuple[int, ...]:
    if policy in MODEL_POLICIES and len(request.asks) == 1:
        best = ctx.fragmentation_model().best_choice(request, node)
        if best is not None:
            return best[1]
    options = gpu_options(ask, node)
    if len(options) < ask.count:
        raise PlacementError(f"{request.name or 'pod'} does not fit on {node.name}")
    gpus = node.gpus
    if policy == "random":
        return tuple(ctx.rng.sample(options, ask.count))
    if policy in ("spread", "spread-gpu"):
        options.sort(key=lambda i: (gpus[i].used_fraction, i))
    elif policy == "spread-workload":
        w = request.workload
        options.sort(key=lambda i: (gpus[i].workloads.get(w, 0), -gpus[i].used_fraction, i))
    else:  # binpack, binpack-gpu, best-fit, fragmentation outside its model
        options.sort(key=lambda i: (-gpus[i].used_fraction, i))
    return tuple(options[:ask.count])


# -- raw node scores (higher is better) -------------------------------------------------------------

def _load_after(request: PodRequest, node: NodeState) -> float:
    """GPU use of the node after the pod lands (0..1); CPU use for a pod without GPUs."""
    if request.asks and node.n_open:
        return (node.util * node.n_open + request.gpu_cores / 100) / node.n_open
    return (node.cpu_alloc - node.cpu_free + request.cpu_milli) / node.cpu_alloc if node.cpu_alloc else 0.0


def _chosen_fullness(policy: str, request: PodRequest, node: NodeState, ctx: PolicyContext) -> float:
    if not request.asks:
        return 0.0
    ask = request.asks[0]
    chosen = _pick(policy, request, ask, node, ctx)
    return sum(node.gpus[i].used_fraction for i in chosen) / len(chosen)


def _raw_binpack(request, node, ctx, model):
    return (_load_after(request, node),)


def _raw_spread(request, node, ctx, model):
    return (-_load_after(request, node),)


def _raw_binpack_gpu(request, node, ctx, model):
    return (_chosen_fullness("binpack-gpu", request, node, ctx), _load_after(request, node))


def _raw_spread_gpu(request, node, ctx, model):
    return (-_chosen_fullness("spread-gpu", request, node, ctx), -_load_after(request, node))


def _raw_spread_workload(request, node, ctx, model):
    w = request.workload
    if not w:
        return (0, 0, _load_after(request, node))
    on_gpu = 0
    if request.asks:
        chosen = _pick("spread-workload", request, request.asks[0], node, ctx)
        on_gpu = min(node.gpus[i].workloads.get(w, 0) for i in chosen)
    return (-node.workloads.get(w, 0), -on_gpu, _load_after(request, node))


def _left_after(request: PodRequest, node: NodeState) -> float:
    """What the node has left after the pod lands: the free shares of its CPU, memory and GPUs, summed."""
    left = 0.0
    if node.cpu_alloc:
        left += (node.cpu_free - request.cpu_milli) / node.cpu_alloc
    if node.mem_alloc:
        left += (node.mem_free - request.memory_bytes) / node.mem_alloc
    if node.n_open:
        left += 1.0 - _load_after(request, node) if request.asks else 1.0 - node.util
    return left


def _raw_best_fit(request, node, ctx, model):
    return (-_left_after(request, node), _chosen_fullness("best-fit", request, node, ctx))


def _raw_random(request, node, ctx, model):
    return (ctx.rng.random(),)


def _outside_model(request, node, ctx) -> tuple:
    """The score of a pod outside FGD's capacity model (MIG, time-slice, several GPU containers): binpack."""
    return (0, _load_after(request, node), _chosen_fullness("binpack", request, node, ctx))


def _raw_fgd(request, node, ctx, model: FragmentationModel):
    best = model.best_choice(request, node)
    if best is None:
        return _outside_model(request, node, ctx)
    return (-best[0], -_left_after(request, node))


def _raw_fragmentation(request, node, ctx, model: FragmentationModel):
    best = model.best_choice(request, node)
    if best is None:
        return _outside_model(request, node, ctx)
    growth = best[0] / model.total_weight if model.total_weight else 0.0  # cores, averaged over shapes
    cost = growth + _stranding_growth(request, node, model)
    pack = PACK_WEIGHT_CORES * _left_after(request, node)
    if model.reserved_share(node.product):  # pods naming this model could use what the pod takes
        return Priced(cost, node.product, usable_taken(request, node, model), pack)
    return (-cost - pack, 0.0)


def _stranding_growth(request: PodRequest, node: NodeState, model: FragmentationModel) -> float:
    """How many more of the node's idle GPU cores its CPU and memory could no longer feed (at the
    workload's host resources per core) once the pod lands; negative where the pod uses up GPUs that
    were short of CPU or memory anyway."""
    if not request.asks:
        return 0.0  # a pod without GPUs: FGD's growth already counts shapes it would crowd out
    idle = idle_cores(node)
    return (model.stranded(idle - request.gpu_cores, node.cpu_free - request.cpu_milli,
                           node.mem_free - request.memory_bytes)
            - model.stranded(idle, node.cpu_free, node.mem_free))


# The raw score of each policy: (request, node, context, fragmentation model or None) -> tuple.
SCORERS = {"binpack": _raw_binpack, "spread": _raw_spread, "binpack-gpu": _raw_binpack_gpu,
           "spread-gpu": _raw_spread_gpu, "spread-workload": _raw_spread_workload, "best-fit": _raw_best_fit,
           "random": _raw_random, "fragmentation": _raw_fragmentation, "fgd": _raw_fgd}
if set(SCORERS) != set(POLICIES):  # one list of names: the core's, which the config and webhook check
    raise ImportError(f"placement scores {sorted(SCORERS)} but the core names {sorted(POLICIES)}")
