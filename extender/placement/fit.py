"""Does a pod fit on a node, which GPUs could serve each of its asks, and if it does not fit, why.

Every refusal carries a reason worded as kube-scheduler words its own, and says whether preemption
could help: ``unresolvable`` when the node could never hold the pod (wrong GPU model, no GPU of the
mode, a card too small, too few GPUs in all, more CPU or memory than it has), resolvable when other
pods occupy what it needs. Results are cached in the node's ``cache`` (emptied on every change).
"""

from __future__ import annotations

from dataclasses import dataclass

from extender.placement.nodestate import NodeState
from extender.placement.grants import ContainerPlacement, Placement
from tessera.podrequest import (
    KIND_GPU,
    KIND_MIG,
    KIND_MPS,
    KIND_MPS_WHOLE,
    KIND_TIMESLICE,
    LABEL_GPU_PRODUCT,
    GpuAsk,
    PodRequest,
)


@dataclass(frozen=True)
class Misfit:
    """Why a pod does not fit on a node, and whether evicting other pods could change that."""

    reason: str
    unresolvable: bool


def node_fit(request: PodRequest, node: NodeState) -> Misfit | None:
    """None if the pod fits on the node now, else why not (cached per node state and request shape)."""
    key = request.key  # the fit result is cached under the bare request key
    cache = node.cache
    if key in cache:
        return cache[key]
    shared = _SHARED.get(key)  # nodes in the same state share the answer
    if shared is None:
        if len(_SHARED) > 4096:
            _SHARED.clear()
        shared = _SHARED[key] = {}
    sid = node.state_id()
    result = shared.get(sid, _UNSET)
    if result is _UNSET:
        result = _fit(request, node)
        if len(shared) > 200_000:
            shared.clear()
        shared[sid] = result
    cache[key] = result
    return result


_SHARED: dict[str, dict] = {}  # request key -> node state id -> Misfit or None (no tuple keys to track)
_UNSET = object()


def _fit(request: PodRequest, node: NodeState) -> Misfit | None:
    if request.cpu_milli > node.cpu_free:
        return Misfit("Insufficient cpu", request.cpu_milli > node.cpu_alloc)
    if request.memory_bytes > node.mem_free:
        return Misfit("Insufficient memory", request.memory_bytes > node.mem_alloc)
    models = request.models
    if models is not None and not models.allows(node.product):
        return Misfit(f"node(s) didn't have the GPU model the pod asks for ({LABEL_GPU_PRODUCT} "
                      f"{models.describe()})", True)
    asks = request.asks
    if not asks:
        return None
    if len(asks) == 1:
        return ask_fit(asks[0], node)
    for ask in asks:  # each ask alone: anything unresolvable shows here
        misfit = ask_fit(ask, node)
        if misfit is not None:
            return misfit
    return _fit_together(asks, node)


def _fit_together(asks: tuple[GpuAsk, ...], node: NodeState) -> Misfit | None:
    """Place the asks one after another, largest first, each on its tightest GPUs."""
    scratch = node.copy()
    for i, ask in enumerate(sorted(asks, key=lambda a: -a.cores)):
        misfit = ask_fit(ask, scratch)
        if misfit is not None:
            return Misfit(f"{misfit.reason} (with the pod's other containers placed)", False)
        chosen = tightest(ask, scratch)
        grants = make_ask_grants(ask, scratch, chosen)
        scratch.assume(Placement(f"\0fit{i}", scratch.name, (ContainerPlacement("", grants),)))
    return None


def _no_mode(node: NodeState, mode: str) -> Misfit:
    if any(g.mode == mode for g in node.gpus):
        return Misfit(f"node(s) had no healthy GPU in {mode} mode that takes new grants", True)
    return Misfit(f"node(s) had no GPU in {mode} mode", True)


def ask_fit(ask: GpuAsk, node: NodeState) -> Misfit | None:
    """None if one container's ask fits on the node's GPUs now, else why not."""
    kind = ask.kind
    if kind == KIND_MPS:
        if not node.mps_open:
            return _no_mode(node, "mps")
        core, mem = ask.core, ask.memory_gib
        if mem is not None and mem > node.mps_max_gib:
            return Misfit(f"node(s) had no GPU with {mem} GiB of memory", True)
        for c, m, gib, _ in node.mps_room:
            if c >= core and m >= (mem if mem is not None else max(1, core * gib // 100)):
                return None
        return Misfit(f"node(s) didn't have {ask.describe()}", False)
    if kind == KIND_MPS_WHOLE or kind == KIND_GPU:
        mode, total, free = (("mps", node.mps_open, node.mps_full) if kind == KIND_MPS_WHOLE
                             else ("exclusive", node.excl_open, node.excl_free))
        if not total:
            return _no_mode(node, mode)
        if total < ask.count:
            return Misfit(f"node(s) had fewer than {ask.count} GPUs in {mode} mode", True)
        if kind == KIND_MPS_WHOLE and ask.memory_gib is not None and ask.memory_gib > ask.count * node.mps_max_gib:
            return Misfit(f"node(s) had no {ask.count} GPUs with {ask.memory_gib} GiB of memory together", True)
        return None if free >= ask.count else Misfit(f"node(s) didn't have {ask.describe()}", False)
    if kind == KIND_MIG:
        total = node.mig_open.get(ask.profile, 0)
        if not total:
            return Misfit(f"node(s) had no MIG {ask.profile} instance", True)
        if total < ask.count:
            return Misfit(f"node(s) had fewer than {ask.count} MIG {ask.profile} instances", True)
        return None if node.mig_free.get(ask.profile, 0) >= ask.count else \
            Misfit(f"node(s) didn't have {ask.describe()}", False)
    if kind == KIND_TIMESLICE:
        if not node.ts_open:
            return _no_mode(node, "timeslice")
        if node.ts_open < ask.count:
            return Misfit(f"node(s) had fewer than {ask.count} time-slice replicas", True)
        return None if node.ts_free >= ask.count else Misfit(f"node(s) didn't have {ask.describe()}", False)
    return Misfit(f"unknown GPU ask {kind!r}", True)


def gpu_options(ask: GpuAsk, node: NodeState) -> list[int]:
    """GPU indices that could serve one unit of the ask now; a GPU with room for several units of a MIG
    or time-slice ask is listed once per unit."""
    kind = ask.kind
    if kind == KIND_MPS:
        core, mem = ask.core, ask.memory_gib
        return [i for c, m, gib, i in node.mps_room
                if c >= core and m >= (mem if mem is not None else max(1, core * gib // 100))]
    out: list[int] = []
    for g in node.gpus:
        if not g.open:
            continue
        if kind == KIND_MPS_WHOLE:
            if g.mode == "mps" and g.core_free == 100 and not g.pods:
                out.append(g.index)
        elif kind == KIND_GPU:
            if g.mode == "exclusive" and not g.whole:
                out.append(g.index)
        elif kind == KIND_MIG:
            out.extend(g.index for m in g.mig if m.profile == ask.profile and m.healthy and not m.holder)
        elif kind == KIND_TIMESLICE and g.mode == "timeslice":
            out.extend([g.index] * g.ts_free)
    return out


def tightest(ask: GpuAsk, node: NodeState) -> tuple[int, ...]:
    """The ask's GPUs chosen best-fit: the fullest GPUs that can serve it (lowest index on ties)."""
    options = gpu_options(ask, node)
    options.sort(key=lambda i: (-node.gpus[i].used_fraction, i))
    return tuple(options[:ask.count])


def make_ask_grants(ask: GpuAsk, node: NodeState, indices: tuple[int, ...]):
    """The grants for an ask on chosen GPUs (MPS memory resolved against each card)."""
    if ask.kind == KIND_MPS:
        gib = node.gpus[indices[0]].memory_gib
        return node.make_grants(KIND_MPS, indices, core=ask.core, memory_gib=ask.memory_on(gib))
    return node.make_grants(ask.kind, indices, profile=ask.profile)
