"""GPU fragmentation as FGD measures it (Weng et al., "Beware of Fragmentation", USENIX ATC 2023).

For a node and a task shape, the *fragment* is the node's idle GPU capacity that such a task could not
use: all of it when the task cannot run on the node at all (too few free GPUs, a model it refuses, CPU
or memory short), otherwise the idle capacity of the GPUs whose free share is smaller than what the
task asks of one GPU. A node's fragmentation is the sum over typical shapes of weight x fragment.
FGD places a pod where fragmentation grows least (``delta = after - before``), on the GPU that does so.
The model also knows two things of the workload the fragmentation policy adds to FGD's growth: its
host resources per GPU core (``stranded``: idle GPUs a node's CPU or memory could not feed) and what
of it asks for GPU models by name (``named_demand``, ``named_host``, ``reserved_share``), which the
policy's model cost reads (``scarcity``).

Capacity unit: one GPU is 100 cores (``nvidia.com/mps-core``); an idle exclusive GPU counts 100.
MPS shares with proportional memory take ``max(1, core x card GiB // 100)`` GiB of the card they land
on. MIG and time-slice GPUs are outside this capacity model and shapes of those kinds are ignored.

Weights are whole counts and capacities whole cores, so results are exact integers: nodes in the
same state give equal answers, and ties are real. Fragmentation per (GPU state, shapes that fit by
CPU, memory and model) is memoized across nodes, and so is the best choice per (request shape, node
state id); a node's results are kept in its cache per model version, so only nodes that changed are
computed again, and a new model computes once per node state, not once per node.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from extender.placement.fit import node_fit
from extender.placement.nodestate import NodeState
from tessera.podrequest import KIND_GPU, KIND_MPS, KIND_MPS_WHOLE, GpuAsk, ModelConstraint, PodRequest

_CPU_ONLY, _SHARE, _WHOLE, _EXCL = 0, 1, 2, 3
_KIND_CODE = {KIND_MPS: _SHARE, KIND_MPS_WHOLE: _WHOLE, KIND_GPU: _EXCL}
_versions = itertools.count(1)

# The share of the workload's CPU per GPU core a node must keep for its idle GPUs not to count as
# stranded. At the full mean (1.0), a node with 12 cores per GPU (8 GPUs, 96 cores) that takes a
# CPU-heavy pod counts as stranding more than the pod's GPUs, so such pods went to the few nodes with
# 16 cores per GPU, the only ones where 8-GPU pods asking 120 cores fit, and those pods were dropped
# from 75 % arrival on (multigpu20 and default lists). Replay, seeds 42-44, 80-130 %: 0.75-0.95 close
# that gap; 0.9 keeps every list at or above fgd and best-fit at every level, within 0.015 points of
# 1.0 where 1.0 already was (the README's Benchmarks give all lists and levels).
STRANDING_CPU_SHARE = 0.9
_UNSET = object()


@dataclass(frozen=True)
class TaskShape:
    """A typical task: CPU, memory, what it asks of the GPUs, and the models it accepts."""

    cpu_milli: int
    memory_bytes: int
    ask: GpuAsk | None
    models: ModelConstraint | None = None


def shape_of(request: PodRequest) -> TaskShape | None:
    """The request as a task shape, or None for kinds the capacity model leaves out (MIG, time-slice,
    several GPU containers)."""
    asks = request.asks
    if len(asks) > 1 or (asks and asks[0].kind not in _KIND_CODE):
        return None
    return TaskShape(request.cpu_milli, request.memory_bytes, asks[0] if asks else None, request.models)


def gpu_key(node: NodeState) -> tuple:
    """The node's GPU state as fragmentation sees it: sorted (cores free, GiB free, card GiB) of open
    MPS GPUs with cores free, and the count of free exclusive GPUs."""
    key = node.cache.get("gpukey")
    if key is None:
        key = (tuple(sorted(r[:3] for r in node.mps_room)), node.excl_free)
        node.cache["gpukey"] = key
    return key


def idle_cores(node: NodeState) -> int:
    """The node's idle GPU capacity in the model's unit: free cores of open MPS GPUs, 100 per free
    exclusive GPU."""
    room, excl = gpu_key(node)
    return sum(r[0] for r in room) + 100 * excl


def _prefix_masks(values: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted thresholds and, for each count k of them, the mask of the k smallest."""
    values.sort()
    axis, prefix, mask = [], [0], 0
    for v, bit in values:
        mask |= bit
        axis.append(v)
        prefix.append(mask)
    return axis, prefix


class FragmentationModel:
    """Typical shapes with weights, and the fragmentation they measure. Immutable: learn a new one
    (``ShapeBook``) when the workload changes; ``version`` tells caches apart."""

    def __init__(self, shapes: Iterable[tuple[TaskShape, int]]) -> None:
        merged: Counter[TaskShape] = Counter()
        for shape, weight in shapes:
            if weight > 0 and (shape.ask is None or shape.ask.kind in _KIND_CODE):
                merged[shape] += weight
        self.shapes: tuple[tuple[TaskShape, int], ...] = tuple(merged.items())
        self.total_weight = sum(merged.values())
        self.version = next(_versions)
        self._all = (1 << len(self.shapes)) - 1
        # Shapes grouped by GPU ask (the per-GPU test depends on the ask only): per group
        # (kind code, core, explicit GiB or -1, count, ((bit, weight), ...)).
        groups: dict[tuple, list[tuple[int, int]]] = {}
        for i, (s, w) in enumerate(self.shapes):
            a = s.ask
            gk = (_CPU_ONLY, 0, -1, 0) if a is None else \
                (_KIND_CODE[a.kind], a.core, -1 if a.memory_gib is None else a.memory_gib, a.count)
            groups.setdefault(gk, []).append((1 << i, w))
        self._groups = [gk + (tuple(rows), sum(w for _, w in rows), sum(b for b, _ in rows))
                        for gk, rows in groups.items()]
        # Which shapes fit by CPU and by memory: prefix masks over each sorted axis.
        self._cpu_axis, self._cpu_prefix = _prefix_masks([(s.cpu_milli, 1 << i) for i, (s, _) in enumerate(self.shapes)])
        self._mem_axis, self._mem_prefix = _prefix_masks([(s.memory_bytes, 1 << i)
                                                          for i, (s, _) in enumerate(self.shapes)])
        self._model_masks: dict[str, int] = {}
        self._reserved: dict[str, float] = {}
        self._named: tuple | None = None
        self._named_host: dict[str, tuple[float, float]] = {}
        # Host resources the workload brings per GPU core (weighted over shapes with GPUs): what a
        # node needs left to feed its idle GPUs (``stranded``).
        gpu_shapes = [(s, w) for s, w in self.shapes if s.ask is not None]
        cores = sum(w * s.ask.cores for s, w in gpu_shapes)
        self.cpu_per_core = sum(w * s.cpu_milli for s, w in gpu_shapes) / cores if cores else 0.0
        self.memory_per_core = sum(w * s.memory_bytes for s, w in gpu_shapes) / cores if cores else 0.0
        self._cpu_masks: dict[tuple[int, int], int] = {}
        self._frag: dict[tuple, int] = {}
        self._frag_key = f"frag|{self.version}"
        self._choices: dict[str, dict[int, tuple[int, tuple[int, ...]] | None]] = {}
        self._memo: dict = {}

    # -- masks: which shapes could run by model, and by CPU and memory ---------------------------------

    def _model_mask(self, product: str) -> int:
        mask = self._model_masks.get(product)
        if mask is None:
            mask = 0
            for i, (s, _) in enumerate(self.shapes):
                if s.ask is None or s.models is None or s.models.allows(product):
                    mask |= 1 << i
            self._model_masks[product] = mask
        return mask

    def _cpu_mask(self, cpu: int, mem: int) -> int:
        return self._cpu_prefix[bisect_right(self._cpu_axis, cpu)] & self._mem_prefix[bisect_right(self._mem_axis, mem)]

    def reserved_share(self, product: str) -> float:
        """The share of the workload (by weight) whose shapes name GPU models and accept ``product``:
        capacity of that model taken by anyone else is capacity those pods may then miss."""
        share = self._reserved.get(product)
        if share is None:
            held = sum(w for s, w in self.shapes if s.ask is not None and s.models is not None
                       and s.models.allows(product))
            share = self._reserved[product] = held / self.total_weight if self.total_weight else 0.0
        return share

    def named_demand(self) -> tuple:
        """((model constraint, share of the workload's GPU cores its shapes ask), ...) for the shapes
        that name GPU models: the demand that can only use those models (``scarcity``)."""
        demand = self._named
        if demand is None:
            by: Counter = Counter()
            cores = 0
            for s, w in self.shapes:
                if s.ask is not None:
                    cores += w * s.ask.cores
                    if s.models is not None:
                        by[s.models] += w * s.ask.cores
            demand = self._named = tuple((m, c / cores) for m, c in by.items()) if cores else ()
        return demand

    def named_host(self, product: str) -> tuple[float, float]:
        """(CPU millicores, memory bytes) per GPU core that the shapes naming GPU models and accepting
        ``product`` bring (weighted by their cores); the workload's own where none does."""
        host = self._named_host.get(product)
        if host is None:
            rows = [(s, w) for s, w in self.shapes if s.ask is not None and s.models is not None
                    and s.models.allows(product)]
            cores = sum(w * s.ask.cores for s, w in rows)
            host = ((sum(w * s.cpu_milli for s, w in rows) / cores, sum(w * s.memory_bytes for s, w in rows) / cores)
                    if cores else (self.cpu_per_core, self.memory_per_core))
            self._named_host[product] = host
        return host

    def stranded(self, idle_cores: float, cpu_free: int, mem_free: int) -> float:
        """Idle GPU cores that ``cpu_free`` and ``mem_free`` cannot feed at the workload's host
        resources per GPU core (CPU at ``STRANDING_CPU_SHARE`` of it): GPUs that typical pods would
        find short of CPU or memory later."""
        fed = float("inf")
        if self.cpu_per_core:
            fed = cpu_free / (self.cpu_per_core * STRANDING_CPU_SHARE)
        if self.memory_per_core:
            fed = min(fed, mem_free / self.memory_per_core)
        return idle_cores - fed if idle_cores > fed else 0.0

    # -- fragmentation --------------------------------------------------------------------------------

    def fragment(self, key: tuple, mask: int) -> int:
        """Weighted fragment (cores x weight) of a GPU state ``key`` (see ``gpu_key``) for the shapes in
        ``mask`` that could run there by model, CPU and memory; the rest count all idle capacity."""
        memo_key = (key, mask)
        value = self._frag.get(memo_key)
        if value is not None:
            return value
        room, excl = key
        excl_idle = 100 * excl
        mps_idle = 0
        full = 0
        for c, _, _ in room:
            mps_idle += c
            full += c == 100
        idle = mps_idle + excl_idle
        total = 0
        for kind, core, mem, count, rows, group_weight, group_bits in self._groups:
            if kind == _SHARE:
                frag = excl_idle
                for c, m, gib in room:
                    if c < core or m < (mem if mem >= 0 else max(1, core * gib // 100)):
                        frag += c
            elif kind == _WHOLE:
                frag = (mps_idle - 100 * full + excl_idle) if full >= count else idle
            elif kind == _EXCL:
                frag = mps_idle if excl >= count else idle
            else:
                frag = 0  # a CPU-only shape that can run uses no GPU and leaves none unusable
            if mask & group_bits == group_bits:
                total += group_weight * frag
            else:
                for bit, weight in rows:
                    total += weight * (frag if mask & bit else idle)
        if len(self._frag) > 500_000:
            self._frag.clear()
        self._frag[memo_key] = total
        return total

    def node_fragment(self, node: NodeState) -> int:
        """The node's weighted fragmentation now (cached in the node until it changes)."""
        ck = self._frag_key
        value = node.cache.get(ck)
        if value is None:
            mask = self._model_mask(node.product) & self._cpu_mask(node.cpu_free, node.mem_free)
            value = self.fragment(gpu_key(node), mask)
            node.cache[ck] = value
        return value

    def node_fragment_cores(self, node: NodeState) -> float:
        """The node's fragmentation in cores (weights normalised to frequencies)."""
        return self.node_fragment(node) / self.total_weight if self.total_weight else 0.0

    def best_choice(self, request: PodRequest, node: NodeState) -> tuple[int, tuple[int, ...]] | None:
        """(delta, GPU indices) of the placement on this node that grows fragmentation least, the
        fullest GPU on ties; None when the request is outside the model (MIG, time-slice, several
        GPU containers) or does not fit. Cached in the node per request shape and model version."""
        ck = f"fgd|{self.version}|{request.key}"
        cache = node.cache
        if ck in cache:
            return cache[ck]
        memo = self._choices.get(request.key)  # nodes in the same state share the answer
        if memo is None:
            memo = self._choices[request.key] = {}
        sid = node.state_id()
        result = memo.get(sid, _UNSET)
        if result is _UNSET:
            result = self._best_choice(request, node)
            if len(memo) > 200_000:
                memo.clear()
            memo[sid] = result
        cache[ck] = result
        return result

    def memo(self) -> dict:
        """A store for results derived from this model alone, keyed by the caller (per node state):
        dropped with the model."""
        return self._memo

    def _best_choice(self, request: PodRequest, node: NodeState) -> tuple[int, tuple[int, ...]] | None:
        asks = request.asks
        if len(asks) > 1 or (asks and asks[0].kind not in _KIND_CODE) or node_fit(request, node) is not None:
            return None
        before = self.node_fragment(node)
        model_mask = self._model_mask(node.product)
        mask = model_mask & self._cpu_mask(node.cpu_free - request.cpu_milli, node.mem_free - request.memory_bytes)
        room, excl = gpu_key(node)
        if not asks:
            return self.fragment((room, excl), mask) - before, ()
        ask = asks[0]
        kind = ask.kind
        if kind == KIND_GPU:
            indices = tuple(g.index for g in node.gpus if g.open and g.mode == "exclusive" and not g.whole)
            if len(indices) < ask.count:
                return None
            return self.fragment((room, excl - ask.count), mask) - before, indices[:ask.count]
        if kind == KIND_MPS_WHOLE:
            full = [r for r in node.mps_room if r[0] == 100 and not node.gpus[r[3]].pods]
            if len(full) < ask.count:
                return None
            full.sort(key=lambda r: (r[2], r[3]))
            taken = full[:ask.count]
            after = list(room)
            for r in taken:
                after.remove(r[:3])
            return self.fragment((tuple(after), excl), mask) - before, tuple(r[3] for r in taken)
        core, mem = ask.core, ask.memory_gib
        best: tuple[int, int, int] | None = None  # (delta, cores free, index)
        seen: dict[tuple[int, int, int], int] = {}
        for c, m, gib, i in node.mps_room:
            need = mem if mem is not None else max(1, core * gib // 100)
            if c < core or m < need:
                continue
            state = (c, m, gib)
            delta = seen.get(state)
            if delta is None:
                after = list(room)
                after.remove(state)
                if c > core:
                    after.append((c - core, m - need, gib))
                    after.sort()
                delta = self.fragment((tuple(after), excl), mask) - before
                seen[state] = delta
            cand = (delta, c, i)
            if best is None or cand < best:
                best = cand
        if best is None:
            return None
        return best[0], (best[2],)


class ShapeBook:
    """Typical shapes learned from the pods the extender has seen: the last ``window`` of them.

    The model is rebuilt after every ``refresh`` new pods (default a tenth of the window), not on
    each one, so the per-node caches survive between rebuilds.
    """

    def __init__(self, window: int = 1000, refresh: int | None = None,
                 initial: Sequence[tuple[TaskShape, int]] = ()) -> None:
        self._seen: deque[TaskShape] = deque(maxlen=window)
        self._counts: Counter[TaskShape] = Counter()
        self._refresh = refresh or max(1, window // 10)
        self._since = 0
        self._model = FragmentationModel(initial) if initial else None
        self._empty = False

    def observe(self, request: PodRequest) -> None:
        """Remember a pod's shape (pods outside the capacity model are skipped)."""
        shape = shape_of(request)
        if shape is None:
            return
        if len(self._seen) == self._seen.maxlen:
            old = self._seen[0]
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        self._seen.append(shape)
        self._counts[shape] += 1
        self._since += 1
        # A model built before any pod was seen knows no shape: replace it at the first one, not
        # ``refresh`` pods later (until then every node would measure 0 fragmentation).
        if self._model is None or self._since >= self._refresh or self._empty:
            self._model = None

    def model(self) -> FragmentationModel:
        """The current model (built from what was seen; empty before any pod)."""
        if self._model is None:
            self._model = FragmentationModel(self._counts.items())
            self._empty = not self._counts
            self._since = 0
        return self._model
