"""Where a pod goes: per container the GPU grants (GPU UUID or MIG UUID; core percent and GiB for MPS)
and the device IDs the kubelet should be steered to. The assignment annotation is written from this.

Device IDs are spelled by ``tessera.deviceids`` (a GPU's UUID, a MIG instance's UUID, or a share's ID).
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.deviceids import core_id, mem_id, ts_id


@dataclass(frozen=True)
class GpuAllotment:
    """What a placement allots one container on one GPU (not ``tessera.grant.Grant``, the plugin's signed
    grant of one resource to a container, which the hook checks).

    ``kind`` is the ask's kind (gpu, mig, mps, mps-whole, timeslice); ``core`` and ``memory_gib`` are
    the MPS share (100 and the whole card for mps-whole); ``core_ids``/``mem_ids``/``ts_ids`` are the
    unit numbers held, from which the device IDs are spelled.
    """

    kind: str
    gpu_index: int
    gpu_uuid: str
    core: int = 0
    memory_gib: int = 0
    mig_uuid: str = ""
    core_ids: tuple[int, ...] = ()
    mem_ids: tuple[int, ...] = ()
    ts_ids: tuple[int, ...] = ()

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The device IDs to prefer for this grant, as the device plugin advertises them."""
        if self.kind == "gpu":
            return (self.gpu_uuid,)
        if self.kind == "mig":
            return (self.mig_uuid,)
        if self.kind == "timeslice":
            return tuple(ts_id(self.gpu_uuid, n) for n in self.ts_ids)
        return (tuple(core_id(self.gpu_uuid, n) for n in self.core_ids)
                + tuple(mem_id(self.gpu_uuid, n) for n in self.mem_ids))


@dataclass(frozen=True)
class ContainerPlacement:
    """The grants of one container (empty for a container that uses no GPU)."""

    container: str
    grants: tuple[GpuAllotment, ...]

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d for g in self.grants for d in g.device_ids)


@dataclass(frozen=True)
class Placement:
    """A pod's place: its node, its containers' grants, and what it takes of the node's CPU and memory."""

    pod: str
    node: str
    containers: tuple[ContainerPlacement, ...]
    cpu_milli: int = 0
    memory_bytes: int = 0
    workload: str = ""

    @property
    def grants(self) -> tuple[GpuAllotment, ...]:
        return tuple(g for c in self.containers for g in c.grants)

    @property
    def gpu_cores(self) -> int:
        """GPU capacity held, in cores (MPS core percent; 100 per whole GPU)."""
        return sum(100 if g.kind == "gpu" else g.core for g in self.grants)
