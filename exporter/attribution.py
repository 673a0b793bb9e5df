"""Which container each GPU process belongs to, and each container's use of each GPU against its grant.

NVML names processes by host pid (the DaemonSet shares the host's PID namespace). A pid maps to a
container through the hook's records: the record's init pid, else ``<proc_root>/<pid>/cgroup``
against the record's cgroup paths (the process's cgroup or one of its parents), else a container
ID inside the cgroup path (``cri-containerd-<id>.scope``). MPS clients come from NVML's MPS process
list, so each client is counted for its own container, not for the MPS server.

A container's grant on a GPU comes from its hook record (the signed grant: ``core``, ``mem_gib``,
UUIDs); where there is no record, from the device IDs the kubelet's pod-resources API lists for it
(``::core::<n>`` counts percent, ``::mem::<n>`` counts GiB). A whole GPU grants all its memory; a MIG
instance its own memory; a time-sliced replica no amount at all (no isolation to measure against).

A container's utilization of a GPU is the sum of its processes' SM utilization as NVML reports it
per process (``nvmlDeviceGetProcessUtilization``); NVML has none on MIG devices, so there is none.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from exporter.podresources import ContainerRef, PodDevices
from exporter.records import ContainerRecord, ref_of
from tessera import RESOURCE_GPU, RESOURCE_MIG_PREFIX, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.deviceids import gpu_of
from tessera.gpu import GpuInfo, GpuSample

__all__ = ["ContainerUsage", "ProcessOwners", "attribute"]

MIB, GIB = 1 << 20, 1 << 30
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ContainerUsage:
    """One container's use of one GPU (or one MIG instance), and what its grant there allows."""

    ref: ContainerRef
    pod_uid: str
    gpu_uuid: str
    mig_uuid: str | None
    used_bytes: int
    processes: int
    grant_memory_bytes: int | None
    grant_core_ratio: float | None
    utilization_ratio: float | None = None  # its processes' NVML smUtil summed, /100; None where NVML has none

    @property
    def overuse_bytes(self) -> int:
        """Memory used beyond the grant (0 when within it or when there is no memory grant)."""
        if self.grant_memory_bytes is None:
            return 0
        return max(0, self.used_bytes - self.grant_memory_bytes)


class ProcessOwners:
    """Maps host pids to the hook's container records."""

    def __init__(self, records: list[ContainerRecord], proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._by_pid = {r.pid: r for r in records if r.pid}
        self._by_cgroup = {path: r for r in records for path in r.cgroup_paths}
        self._by_id = {r.container_id: r for r in records}

    def cgroup_paths(self, pid: int) -> list[str]:
        """The cgroup paths of a process (every hierarchy), or [] if it is gone."""
        try:
            with open(os.path.join(self.proc_root, str(pid), "cgroup"), encoding="utf-8") as fh:
                return [line.rstrip("\n").split(":", 2)[2] for line in fh if line.count(":") >= 2]
        except OSError:
            return []

    def owner(self, pid: int) -> ContainerRecord | None:
        """The container a process runs in, or None where no record claims it."""
        record = self._by_pid.get(pid)
        if record is not None:
            return record
        for path in self.cgroup_paths(pid):
            walk = path
            while walk and walk != "/":
                if walk in self._by_cgroup:
                    return self._by_cgroup[walk]
                walk = os.path.dirname(walk)
            for token in _CONTAINER_ID.findall(path):
                if token in self._by_id:
                    return self._by_id[token]
        return None


@dataclass
class _Holding:
    pod_uid: str = ""
    used: int = 0
    processes: int = 0
    memory: int | None = None
    core: float | None = None
    sm_util: int | None = None

    def add_memory(self, amount: int) -> None:
        self.memory = (self.memory or 0) + amount


def _grant_from_record(record: ContainerRecord, gpus: dict[str, GpuInfo], migs: dict[str, tuple[GpuInfo, int]],
                       out: dict[tuple[ContainerRef, str], _Holding]) -> None:
    # mps-memory first: whole GPUs through MPS take all their memory only where no mps-memory is granted.
    for grant in sorted(record.grants, key=lambda g: g.resource != RESOURCE_MPS_MEMORY):
        # A grant over several GPUs (mps-core in hundreds) limits each device to an even part of it,
        # as the plugin's CUDA_MPS_PINNED_DEVICE_MEM_LIMIT says per ordinal.
        mem_gib = grant.mem_gib / len(grant.uuids) if grant.mem_gib and grant.uuids else grant.mem_gib
        for uuid in grant.uuids:
            h = out.setdefault((ref_of(record), uuid), _Holding(record.pod_uid))
            _apply(grant.resource, uuid, grant.core, mem_gib, gpus, migs, h)


def _apply(resource: str, uuid: str, core: int | None, mem_gib: float | None, gpus: dict[str, GpuInfo],
           migs: dict[str, tuple[GpuInfo, int]], h: _Holding) -> None:
    total = gpus[uuid].memory_total_mib * MIB if uuid in gpus else None
    if resource == RESOURCE_MPS_MEMORY and mem_gib:
        h.add_memory(int(mem_gib * GIB))
    elif resource == RESOURCE_MPS_CORE and core:
        h.core = min(core, 100) / 100.0
        if core > 100 and total is not None and h.memory is None:  # whole GPUs through MPS: all their memory
            h.memory = total
    elif resource == RESOURCE_GPU:
        h.core, h.memory = 1.0, total
    elif resource.startswith(RESOURCE_MIG_PREFIX) and uuid in migs:
        h.memory = migs[uuid][1] * MIB


def _grant_from_devices(ref: ContainerRef, devices: tuple[tuple[str, str], ...], gpus: dict[str, GpuInfo],
                        migs: dict[str, tuple[GpuInfo, int]], out: dict[tuple[ContainerRef, str], _Holding]) -> None:
    counts: dict[tuple[str, str], int] = {}
    for resource, device_id in devices:
        key = (resource, gpu_of(device_id))
        counts[key] = counts.get(key, 0) + 1
    cores = {uuid: n for (resource, uuid), n in counts.items() if resource == RESOURCE_MPS_CORE}
    for (resource, uuid), n in counts.items():
        h = out.setdefault((ref, uuid), _Holding())
        if resource == RESOURCE_MPS_MEMORY:
            h.add_memory(n * GIB)
        elif resource == RESOURCE_MPS_CORE:
            h.core = min(n, 100) / 100.0
        else:
            _apply(resource, uuid, None, None, gpus, migs, h)
    for uuid, n in cores.items():  # mps-core 100 without mps-memory: a whole GPU through MPS
        h = out[(ref, uuid)]
        if n >= 100 and h.memory is None and uuid in gpus:
            h.memory = gpus[uuid].memory_total_mib * MIB


def attribute(infos: list[GpuInfo], samples: list[GpuSample], records: list[ContainerRecord],
              devices: PodDevices | None, owners: ProcessOwners) -> tuple[list[ContainerUsage], dict[str, int]]:
    """Every container's use of every GPU or MIG instance it holds or runs on, and per GPU UUID the
    memory of processes no container claims."""
    gpus = {i.uuid: i for i in infos if i.uuid}
    migs = {m.uuid: (i, m.memory_mib) for i in infos for m in i.mig_instances}
    holdings: dict[tuple[ContainerRef, str], _Holding] = {}
    recorded = set()
    for record in records:
        recorded.add(ref_of(record))
        _grant_from_record(record, gpus, migs, holdings)
    if devices is not None:
        for ref, held in devices.by_container.items():
            if ref not in recorded:
                _grant_from_devices(ref, held, gpus, migs, holdings)
    unattributed: dict[str, int] = {}
    for sample in samples:
        if not sample.healthy:
            continue
        for proc in sample.processes:
            used = (proc.used_memory_mib or 0) * MIB
            record = owners.owner(proc.pid)
            if record is None:
                unattributed[sample.uuid] = unattributed.get(sample.uuid, 0) + used
                continue
            h = holdings.setdefault((ref_of(record), proc.mig_uuid or sample.uuid), _Holding(record.pod_uid))
            h.used += used
            h.processes += 1
            if proc.sm_util_pct is not None:
                h.sm_util = (h.sm_util or 0) + proc.sm_util_pct
            h.pod_uid = h.pod_uid or record.pod_uid
    usages = []
    for (ref, uuid), h in sorted(holdings.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        parent = migs[uuid][0].uuid if uuid in migs else uuid
        usages.append(ContainerUsage(ref, h.pod_uid, parent, uuid if uuid in migs else None, h.used, h.processes,
                                     h.memory, h.core, None if h.sm_util is None else h.sm_util / 100.0))
    return usages, unattributed
