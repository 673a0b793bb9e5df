"""The schedulable state of one node: its GPUs (mode, health, MIG slots), its allocatable CPU and memory,
and the grants held on it.

Built from the node's inventory document; updated in place by ``assume`` (a pod placed) and
``release`` (a pod gone); ``copy`` is cheap. Every change bumps ``version`` and empties ``cache``,
where fit and policy results for this state are kept, so an unchanged node costs a lookup.

A GPU that is unhealthy or has a ``pending_mode`` takes no new grants (``open`` is False).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tessera.inventory import NodeInventory

from extender.placement.grants import GpuAllotment, Placement
from tessera.podrequest import KIND_GPU, KIND_MIG, KIND_MPS, KIND_MPS_WHOLE, KIND_TIMESLICE, LABEL_GPU_PRODUCT

DEFAULT_TIMESLICE_REPLICAS = 4

# Node states seen -> their ids (``NodeState.state_id``). Ids come from a counter that never restarts,
# so emptying the table (bounded) only loses sharing: an id never names two different states.
_STATE_IDS: dict[tuple, int] = {}
_state_ids = itertools.count(1)
MAX_STATE_IDS = 200_000


class StateError(ValueError):
    """A grant that does not match the node's state (a GPU already taken, an unknown pod)."""


class MigInstance:
    """One MIG instance and the pod holding it ('' when free)."""

    __slots__ = ("profile", "uuid", "healthy", "holder")

    def __init__(self, profile: str, uuid: str, healthy: bool, holder: str = "") -> None:
        self.profile, self.uuid, self.healthy, self.holder = profile, uuid, healthy, holder


class GpuState:
    """One GPU and what is held on it."""

    __slots__ = ("index", "uuid", "model", "mode", "memory_gib", "open", "reason", "core_free", "mem_free",
                 "core_held", "mem_held", "whole", "ts_total", "ts_held", "ts_free", "mig", "pods", "workloads")

    def copy(self) -> "GpuState":
        g = GpuState.__new__(GpuState)
        for name in GpuState.__slots__:
            setattr(g, name, getattr(self, name))
        g.mig = [MigInstance(m.profile, m.uuid, m.healthy, m.holder) for m in self.mig]
        g.workloads = dict(self.workloads)
        return g

    @property
    def used_fraction(self) -> float:
        """How much of this GPU is held, 0..1, in the unit of its mode."""
        if self.mode == "mps":
            return (100 - self.core_free) / 100
        if self.mode == "exclusive":
            return 1.0 if self.whole else 0.0
        if self.mode == "timeslice":
            return (self.ts_total - self.ts_free) / self.ts_total if self.ts_total else 0.0
        if self.mig:
            return sum(1 for m in self.mig if m.holder) / len(self.mig)
        return 0.0


def _lowest_free(mask: int, n: int, limit: int) -> tuple[int, ...]:
    out = []
    i = 0
    while len(out) < n and i < limit:
        if not mask >> i & 1:
            out.append(i)
        i += 1
    if len(out) < n:
        raise StateError(f"only {len(out)} of {n} units free")
    return tuple(out)


def _mask(ids: Iterable[int]) -> int:
    m = 0
    for i in ids:
        m |= 1 << i
    return m


class NodeState:
    """A node as placement sees it. Summaries below are refreshed on every change.

    ``mps_room``: (core free, GiB free, card GiB, index) of open MPS GPUs with cores free;
    ``mps_full``: open MPS GPUs with nothing held; ``mps_open``: open MPS GPUs; ``mps_max_gib``: the
    largest open MPS card; ``excl_free``/``excl_open``; ``mig_free``/``mig_open`` per profile;
    ``ts_free``/``ts_open`` replicas; ``util``: mean used fraction of the open GPUs.
    """

    __slots__ = ("name", "product", "labels", "cpu_alloc", "mem_alloc", "cpu_free", "mem_free", "gpus", "pods",
                 "workloads", "version", "cache", "mps_room", "mps_full", "mps_open", "mps_max_gib", "excl_free",
                 "excl_open", "mig_free", "mig_open", "ts_free", "ts_open", "util", "n_open", "watcher")

    def __init__(self, name: str, gpus: list[GpuState], cpu_milli: int, memory_bytes: int,
                 labels: dict[str, str] | None = None) -> None:
        self.name = name
        self.labels = dict(labels or {})
        self.product = self.labels.get(LABEL_GPU_PRODUCT) or (gpus[0].model.replace(" ", "-") if gpus else "")
        self.cpu_alloc = self.cpu_free = cpu_milli
        self.mem_alloc = self.mem_free = memory_bytes
        self.gpus = gpus
        self.pods: dict[str, Placement] = {}
        self.workloads: dict[str, int] = {}
        self.version = 0
        self.cache: dict = {}
        self.watcher = None  # called with the node after each change (a Fleet's change log)
        self._summarize()

    @classmethod
    def from_inventory(cls, inventory: NodeInventory, cpu_milli: int, memory_bytes: int,
                       labels: dict[str, str] | None = None,
                       timeslice_replicas: int = DEFAULT_TIMESLICE_REPLICAS,
                       placements: Iterable[Placement] = ()) -> "NodeState":
        """A node's state from its inventory, allocatable CPU (millicores) and memory (bytes), and the
        placements already held on it (from the ledger)."""
        gpus = []
        for inv in inventory.gpus:
            g = GpuState.__new__(GpuState)
            g.index, g.uuid, g.model, g.mode = inv.index, inv.uuid, inv.model, inv.mode
            g.memory_gib = inv.memory_gib
            g.open = inv.health.healthy and inv.pending_mode is None
            if not inv.health.healthy:
                g.reason = inv.health.reason or "unhealthy"
            else:
                g.reason = f"mode change to {inv.pending_mode} pending" if inv.pending_mode else ""
            g.core_free, g.mem_free = 100, g.memory_gib
            g.core_held = g.mem_held = g.ts_held = 0
            g.whole = False
            g.ts_total = g.ts_free = timeslice_replicas if inv.mode == "timeslice" else 0
            g.mig = [MigInstance(m.profile, m.uuid, m.healthy) for m in inv.mig] if inv.mode == "mig" else []
            g.pods = 0
            g.workloads = {}
            gpus.append(g)
        node = cls(inventory.node, gpus, cpu_milli, memory_bytes, labels)
        for p in placements:
            node.assume(p)
        return node

    def copy(self) -> "NodeState":
        """An independent copy (for trying a placement); its cache starts empty."""
        n = NodeState.__new__(NodeState)
        for name in NodeState.__slots__:
            setattr(n, name, getattr(self, name))
        n.gpus = [g.copy() for g in self.gpus]
        n.pods = dict(self.pods)
        n.workloads = dict(self.workloads)
        n.cache = {}
        n.watcher = None
        return n

    def _summarize(self) -> None:
        room, full, mps_open, max_gib = [], 0, 0, 0
        excl_free = excl_open = ts_free = ts_open = n_open = 0
        mig_free: dict[str, int] = {}
        mig_open: dict[str, int] = {}
        used = 0.0
        for g in self.gpus:
            if not g.open:
                continue
            n_open += 1
            used += g.used_fraction
            mode = g.mode
            if mode == "mps":
                mps_open += 1
                max_gib = max(max_gib, g.memory_gib)
                if g.core_free > 0:
                    room.append((g.core_free, g.mem_free, g.memory_gib, g.index))
                    if g.core_free == 100 and g.mem_free == g.memory_gib and not g.pods:
                        full += 1
            elif mode == "exclusive":
                excl_open += 1
                excl_free += not g.whole
            elif mode == "timeslice":
                ts_open += g.ts_total
                ts_free += g.ts_free
            else:
                for m in g.mig:
                    if m.healthy:
                        mig_open[m.profile] = mig_open.get(m.profile, 0) + 1
                        if not m.holder:
                            mig_free[m.profile] = mig_free.get(m.profile, 0) + 1
        self.mps_room, self.mps_full, self.mps_open, self.mps_max_gib = tuple(room), full, mps_open, max_gib
        self.excl_free, self.excl_open, self.ts_free, self.ts_open = excl_free, excl_open, ts_free, ts_open
        self.mig_free, self.mig_open = mig_free, mig_open
        self.n_open = n_open
        self.util = used / n_open if n_open else 0.0

    def state_id(self) -> int:
        """An id for everything placement reads of this node but its name and workloads: product, CPU
        and memory (allocatable and free), and per GPU (by index) mode, health, card size, free and held
        units. Nodes with equal ids get equal fit, GPU choices and fragmentation answers for any request
        (``spread-workload`` aside, which reads workloads), so those can be shared across nodes."""
        sid = self.cache.get("state")
        if sid is None:
            key = (self.product, self.cpu_alloc, self.cpu_free, self.mem_alloc, self.mem_free,
                   tuple((g.mode, g.open, g.memory_gib, g.core_free, g.mem_free, g.whole, g.pods, g.ts_total,
                          g.ts_free, tuple((m.profile, m.healthy, not m.holder) for m in g.mig) if g.mig else ())
                         for g in self.gpus))
            sid = _STATE_IDS.get(key)
            if sid is None:
                if len(_STATE_IDS) >= MAX_STATE_IDS:
                    _STATE_IDS.clear()
                sid = _STATE_IDS[key] = next(_state_ids)
            self.cache["state"] = sid
        return sid

    def _changed(self) -> None:
        self.version += 1
        self.cache = {}
        self._summarize()
        if self.watcher is not None:
            self.watcher(self)

    # -- grants --------------------------------------------------------------------------------------

    def make_grants(self, kind: str, indices: tuple[int, ...], core: int = 0, memory_gib: int = 0,
                    profile: str = "", count: int = 1) -> tuple[GpuAllotment, ...]:
        """Grants for one ask on the given GPUs, with the lowest free unit IDs; does not apply them."""
        out = []
        for i in indices:
            g = self.gpus[i]
            if kind == KIND_MPS:
                out.append(GpuAllotment(kind, i, g.uuid, core, memory_gib,
                                    core_ids=_lowest_free(g.core_held, core, 100),
                                    mem_ids=_lowest_free(g.mem_held, memory_gib, g.memory_gib)))
            elif kind == KIND_MPS_WHOLE:
                out.append(GpuAllotment(kind, i, g.uuid, 100, g.memory_gib, core_ids=tuple(range(100))))
            elif kind == KIND_GPU:
                out.append(GpuAllotment(kind, i, g.uuid))
            elif kind == KIND_MIG:
                free = [m for m in g.mig if m.profile == profile and m.healthy and not m.holder]
                taken = {gr.mig_uuid for gr in out}
                inst = next(m for m in free if m.uuid not in taken)
                out.append(GpuAllotment(kind, i, g.uuid, mig_uuid=inst.uuid))
            elif kind == KIND_TIMESLICE:
                held = g.ts_held | _mask(n for gr in out if gr.gpu_index == i for n in gr.ts_ids)
                out.append(GpuAllotment(kind, i, g.uuid, ts_ids=_lowest_free(held, 1, g.ts_total)))
        return tuple(out)

    def assume(self, placement: Placement) -> None:
        """Hold a placement's grants and its CPU and memory; raises StateError if a unit is taken."""
        if placement.pod in self.pods:
            raise StateError(f"pod {placement.pod} already holds grants on {self.name}")
        touched = []
        try:
            for grant in placement.grants:
                self._apply(grant, placement.pod, placement.workload, +1)
                touched.append(grant)
        except StateError:
            for grant in touched:
                self._apply(grant, placement.pod, placement.workload, -1)
            self._changed()
            raise
        self.cpu_free -= placement.cpu_milli
        self.mem_free -= placement.memory_bytes
        self.pods[placement.pod] = placement
        if placement.workload:
            self.workloads[placement.workload] = self.workloads.get(placement.workload, 0) + 1
        self._changed()

    def release(self, pod: str) -> Placement:
        """Give back everything a pod holds here; raises StateError if it holds nothing."""
        placement = self.pods.pop(pod, None)
        if placement is None:
            raise StateError(f"pod {pod} holds nothing on {self.name}")
        for grant in placement.grants:
            self._apply(grant, pod, placement.workload, -1)
        self.cpu_free += placement.cpu_milli
        self.mem_free += placement.memory_bytes
        if placement.workload:
            left = self.workloads.get(placement.workload, 0) - 1
            if left > 0:
                self.workloads[placement.workload] = left
            else:
                self.workloads.pop(placement.workload, None)
        self._changed()
        return placement

    def _apply(self, grant: GpuAllotment, pod: str, workload: str, sign: int) -> None:
        g = self.gpus[grant.gpu_index]
        kind = grant.kind
        if kind in (KIND_MPS, KIND_MPS_WHOLE):
            cores, mems = _mask(grant.core_ids), _mask(grant.mem_ids)
            if kind == KIND_MPS_WHOLE:
                mems = (1 << g.memory_gib) - 1
            if sign > 0 and (g.core_held & cores or g.mem_held & mems or g.whole):
                raise StateError(f"{g.uuid}: core or memory units already held")
            if sign > 0 and kind == KIND_MPS_WHOLE and g.pods:
                raise StateError(f"{g.uuid}: not free for a whole GPU")
            g.core_held ^= cores
            g.mem_held ^= mems
            g.core_free = 100 - g.core_held.bit_count()
            g.mem_free = g.memory_gib - g.mem_held.bit_count()
            g.whole = kind == KIND_MPS_WHOLE and sign > 0
        elif kind == KIND_GPU:
            if sign > 0 and g.whole:
                raise StateError(f"{g.uuid}: already held")
            g.whole = sign > 0
        elif kind == KIND_MIG:
            inst = next((m for m in g.mig if m.uuid == grant.mig_uuid), None)
            if inst is None or (sign > 0 and inst.holder):
                raise StateError(f"{grant.mig_uuid}: unknown or already held")
            inst.holder = pod if sign > 0 else ""
        elif kind == KIND_TIMESLICE:
            ids = _mask(grant.ts_ids)
            if sign > 0 and g.ts_held & ids:
                raise StateError(f"{g.uuid}: time-slice replica already held")
            g.ts_held ^= ids
            g.ts_free = g.ts_total - g.ts_held.bit_count()
        g.pods += sign
        if workload:
            left = g.workloads.get(workload, 0) + sign
            if left > 0:
                g.workloads[workload] = left
            else:
                g.workloads.pop(workload, None)
