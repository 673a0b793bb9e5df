"""What ``tessera inspect`` shows of a cluster: per node and GPU the mode, health, who holds which
share, what is free, and the fragmentation the extender would measure.

Plain frozen dataclasses, filled by :mod:`tessera_cli.inspect` and drawn by :mod:`tessera_cli.inspect_table`;
``to_dict`` is the ``-o json`` document (keys in snake_case, stable for scripts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

STATE_ALLOCATED = "allocated"   # the device plugin recorded it (tessera.io/allocated): the kubelet gave it
STATE_ASSIGNED = "assigned"     # the extender placed it (tessera.io/assignment), not yet allocated
VIA_PLUGIN = "device-plugin"    # a GPU the device plugin serves (the node's tessera.io/gpu-inventory)
VIA_DRA = "dra"                 # a GPU the DRA driver publishes (a ResourceSlice), held by ResourceClaims


@dataclass(frozen=True)
class Holder:
    """One container's share of one GPU.

    ``core_pct`` and ``memory_gib`` are what it holds of this GPU (100 and the card for a whole GPU,
    the MIG instance's memory for MIG, None for a time-slice replica, which has no isolation).

    Through DRA (``via`` "dra") a holder is one allocation result of a ResourceClaim: ``claim`` and
    ``request`` name it, ``pods`` are the pods it is reserved for (``pod`` the first, "" when none yet),
    ``container`` is "", and an MPS share's ``core_pct``/``memory_gib`` are its consumed capacity.

    ``phase`` is the pod's ``status.phase`` (of each pod a claim is reserved for, joined by commas;
    "absent" for a pod the API server no longer has).
    """

    namespace: str
    pod: str
    container: str
    kind: str                 # gpu, mig, mps, mps-whole, timeslice (the ask's kind)
    state: str                # STATE_ALLOCATED or STATE_ASSIGNED
    core_pct: int | None = None
    memory_gib: int | None = None
    mig_uuid: str = ""
    mig_profile: str = ""
    replicas: int = 0
    via: str = VIA_PLUGIN
    claim: str = ""
    request: str = ""
    pods: tuple[str, ...] = ()
    share_id: str = ""
    phase: str = ""

    @property
    def pod_key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def pod_keys(self) -> list[str]:
        """``namespace/name`` of every pod this holder stands for (none for an unreserved claim)."""
        names = self.pods or ((self.pod,) if self.pod else ())
        return [f"{self.namespace}/{p}" for p in names]


@dataclass(frozen=True)
class GpuFree:
    """What one GPU can still give: capacity minus what is held (also on an unhealthy GPU; ``schedulable``
    on the GPU says whether new pods may get it)."""

    cores: float               # in the extender's unit: 100 per GPU, by the mode's own measure
    whole: bool = False        # exclusive GPU not held / MPS GPU with nothing held
    core_pct: int | float | None = None        # mps
    memory_gib: int | float | None = None      # mps
    mig: dict[str, int] = field(default_factory=dict)  # mig: free instances by profile
    replicas: int | None = None        # timeslice: free replicas
    replicas_total: int | None = None


@dataclass(frozen=True)
class GpuView:
    """One GPU: what it is, whether it is healthy, who holds it, what is free."""

    index: int
    uuid: str
    model: str
    memory_gib: int
    mode: str
    healthy: bool
    reason: str                 # why it is unhealthy or closed ('' when it takes pods)
    schedulable: bool
    pending_mode: str | None
    mig_instances: dict[str, str]  # MIG UUID -> profile (mig mode)
    holders: tuple[Holder, ...]
    free: GpuFree
    via: str = VIA_PLUGIN       # VIA_PLUGIN or VIA_DRA
    device: str = ""            # DRA: the ResourceSlice's device name (gpu-<index>)

    @property
    def allocated_cores(self) -> float:
        """Cores held, in the extender's unit (100 per GPU): capacity minus what is free."""
        return round(100 - self.free.cores, 2)

    @property
    def allocated_gib(self) -> float:
        """GiB of the card held by its holders (a time-slice replica holds none of its own)."""
        return min(sum(h.memory_gib or 0 for h in self.holders), self.memory_gib)


@dataclass(frozen=True)
class Allocation:
    """Allocated of total, as gpushare's ``kubectl inspect gpushare`` sums it per node and for the cluster:
    GPU cores (100 per GPU) and GPU memory (GiB)."""

    cores: float
    cores_total: float
    memory_gib: float
    memory_gib_total: float

    @classmethod
    def of(cls, gpus: Sequence[GpuView]) -> Allocation:
        """What ``gpus`` hold of what they have."""
        return cls(round(sum(g.allocated_cores for g in gpus), 2), 100.0 * len(gpus),
                   round(sum(g.allocated_gib for g in gpus), 2), float(sum(g.memory_gib for g in gpus)))


@dataclass(frozen=True)
class NodeView:
    """One node. ``problem`` says why its GPUs cannot be shown (no or unreadable inventory);
    ``notes`` lists ledger entries that do not match its GPUs."""

    name: str
    gpus: tuple[GpuView, ...]
    problem: str = ""
    notes: tuple[str, ...] = ()
    fragmentation_cores: float | None = None   # None: the node is outside the capacity model
    idle_cores: float = 0.0                    # free cores of schedulable mps and exclusive GPUs
    addresses: dict[str, str] = field(default_factory=dict)  # status.addresses: type -> the first of that type

    @property
    def address(self) -> str:
        """Where the node is reached: its InternalIP (as gpushare shows it), else its first address, else ''."""
        return self.addresses.get("InternalIP") or next(iter(self.addresses.values()), "")

    @property
    def allocation(self) -> Allocation:
        return Allocation.of(self.gpus)

    @property
    def pods(self) -> list[str]:
        """``namespace/name`` of every pod holding a share here, once each, in order."""
        return list(dict.fromkeys(k for g in self.gpus for h in g.holders for k in h.pod_keys))


@dataclass(frozen=True)
class ShapeWeight:
    """A typical task shape the fragmentation was measured with, and how often it counts."""

    shape: str
    weight: int


@dataclass(frozen=True)
class ClusterView:
    """Every node inspected, with the cluster's fragmentation, each GPU model's scarcity pressure and the
    shapes both were measured with.
    ``dra_problem`` says why DRA objects could not be read ('' when they were); ``dra_notes`` are DRA
    objects that match no node shown (a claim on a device no slice publishes, a slice without a node)."""

    server: str
    nodes: tuple[NodeView, ...]
    shapes: tuple[ShapeWeight, ...]
    shape_source: str
    fragmentation_cores: float
    free_cores_by_mode: dict[str, float]
    dra_problem: str = ""
    dra_notes: tuple[str, ...] = ()
    # Each GPU model's scarcity pressure, 0..1, over every node of the cluster (``--node`` or not), as the
    # fragmentation policy charges it and the extender's ``tessera_gpu_model_pressure`` shows it.
    model_pressure: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``-o json`` document: plain dicts, lists and scalars."""
        doc = _plain(asdict(self))
        for node_doc, node in zip(doc["nodes"], self.nodes):
            node_doc["pods"] = node.pods
            node_doc["allocation"] = asdict(node.allocation)
        doc["allocation"] = asdict(self.allocation)
        return doc

    @property
    def allocation(self) -> Allocation:
        return Allocation.of([g for n in self.nodes for g in n.gpus])


def _plain(value):
    """Tuples as lists, all the way down (what JSON gives back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
