"""The assignment annotation and the placements it stands for, both ways.

``assignment_of`` spells a ``Placement`` as the signed ``tessera.io/assignment`` document (per container,
per resource: GPUs, core percent, GiB, device IDs), as the device plugin reads it in
GetPreferredAllocation. ``placement_of`` reads a document back into the grants it holds on a node, so
the extender's state is rebuilt from the ledger after a restart.

``ask_amounts`` names what a pod asks per container and resource (``("nvidia.com/mps-core", 50)``):
the per-shape rule keeps two pods bound and not yet allocated on one node from sharing any of these.

``holding_mismatch`` says why a record of what a pod holds (an assignment the device plugin wrote, unsigned,
or its ``tessera.io/allocated`` record) is not what the pod asks for: the kubelet gives a container
exactly the device IDs it requests, so a record that names more (or other) is not the plugin's.
"""

from __future__ import annotations

from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MIG_PREFIX, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera import mig_resource_name
from tessera.assignment import Assignment, ResourceAssignment
from tessera.deviceids import core_id, gpu_of, mem_id, unit_of
from tessera.podrequest import (
    KIND_GPU,
    KIND_MIG,
    KIND_MPS,
    KIND_MPS_WHOLE,
    KIND_TIMESLICE,
    PodRequest,
    requested_devices,
)

from extender.placement.nodestate import NodeState
from extender.placement.grants import ContainerPlacement, GpuAllotment, Placement


class NodeMismatchError(ValueError):
    """An assignment that does not match the node it names."""


def ask_amounts(request: PodRequest) -> frozenset[tuple[str, int]]:
    """(resource, amount) for every Tessera resource a container of the pod asks for (whole GPUs through
    MPS by their cores alone)."""
    return frozenset((resource, n) for c in request.containers for resource, n in requested_devices(c.ask).items()
                     if not (c.ask.kind == KIND_MPS_WHOLE and resource == RESOURCE_MPS_MEMORY))


def holding_mismatch(containers: dict[str, dict[str, ResourceAssignment]], request: PodRequest) -> str | None:
    """Why ``containers`` (per container, per resource, what a pod holds) is not what ``request`` asks
    for, else None: each container holds exactly the Tessera resources it asks for, each with as many
    distinct device IDs as it asks, all on the GPUs the record names (one set per container: an MPS
    share's cores and memory are on one card)."""
    asked = {c.name: requested_devices(c.ask) for c in request.containers}
    for cname in containers:
        if cname not in asked:
            return f"container {cname!r} is not in the pod"
    for cname, want in asked.items():
        held = containers.get(cname, {})
        if set(held) != set(want):
            return f"container {cname!r} holds {sorted(held) or 'nothing'} and asks for {sorted(want) or 'nothing'}"
        gpus = set()
        for resource, count in want.items():
            grant = held[resource]
            ids = set(grant.device_ids)
            if len(ids) != count or len(grant.device_ids) != count:
                return f"container {cname!r} holds {len(grant.device_ids)} {resource} device IDs and asks for {count}"
            on = {gpu_of(i) for i in ids}
            if set(grant.gpus) != on or len(grant.gpus) != len(on) or (gpus and on != gpus):
                return f"container {cname!r}: {resource} names GPUs its device IDs are not on"
            gpus = on
            amount = grant.core if resource == RESOURCE_MPS_CORE else grant.mem_gib
            if resource in (RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY) and amount != count:
                return f"container {cname!r}: {resource} says {amount} for {count} device IDs"
    return None


def assignment_of(placement: Placement, request: PodRequest, pod_uid: str) -> Assignment:
    """The assignment document for a placement (unsigned; ``sign_assignment`` signs it)."""
    asks = {c.name: c.ask for c in request.containers}
    containers: dict[str, dict[str, ResourceAssignment]] = {}
    for cp in placement.containers:
        if not cp.grants:
            continue
        ask = asks.get(cp.container)
        kind = cp.grants[0].kind
        res: dict[str, ResourceAssignment] = {}
        uuids = tuple(g.gpu_uuid for g in cp.grants)
        if kind == KIND_MPS:
            g = cp.grants[0]
            core_ids = tuple(core_id(g.gpu_uuid, n) for n in g.core_ids)
            mem_ids = tuple(mem_id(g.gpu_uuid, n) for n in g.mem_ids)
            res[RESOURCE_MPS_CORE] = ResourceAssignment(uuids, core_ids, core=g.core)
            res[RESOURCE_MPS_MEMORY] = ResourceAssignment(uuids, mem_ids, mem_gib=g.memory_gib)
        elif kind == KIND_MPS_WHOLE:
            ids = tuple(i for g in cp.grants for i in g.device_ids)
            res[RESOURCE_MPS_CORE] = ResourceAssignment(uuids, ids, core=100 * len(cp.grants))
        elif kind == KIND_GPU:
            res[RESOURCE_GPU] = ResourceAssignment(uuids, uuids)
        elif kind == KIND_MIG:
            migs = tuple(g.mig_uuid for g in cp.grants)
            res[mig_resource_name(ask.profile if ask else "")] = ResourceAssignment(migs, migs)
        else:
            res[RESOURCE_GPU_SHARED] = ResourceAssignment(uuids, tuple(i for g in cp.grants for i in g.device_ids))
        containers[cp.container] = res
    return Assignment(node=placement.node, pod_uid=pod_uid, containers=containers)


def placement_of(doc: Assignment, node: NodeState, pod: str, request: PodRequest | None) -> Placement:
    """The grants an assignment holds on ``node`` (raises NodeMismatchError when it names unknown GPUs)."""
    by_uuid = {g.uuid: g.index for g in node.gpus}
    by_mig = {m.uuid: g.index for g in node.gpus for m in g.mig}
    names = [c.name for c in request.containers] if request else list(doc.containers)
    containers = []
    for cname in names:
        res = doc.containers.get(cname, {})
        grants: list[GpuAllotment] = []
        try:
            for rname, ra in res.items():
                if rname == RESOURCE_MPS_CORE:
                    if (ra.core or 0) > 100:
                        grants += [GpuAllotment(KIND_MPS_WHOLE, by_uuid[u], u, 100, node.gpus[by_uuid[u]].memory_gib,
                                            core_ids=tuple(range(100))) for u in ra.gpus]
                    else:
                        u = ra.gpus[0]
                        mem = res.get(RESOURCE_MPS_MEMORY)
                        mem_ids = tuple(unit_of(i) for i in mem.device_ids) if mem else ()
                        core_ids = tuple(unit_of(i) for i in ra.device_ids)
                        grants.append(GpuAllotment(KIND_MPS, by_uuid[u], u, ra.core or len(core_ids),
                                               mem.mem_gib or len(mem_ids) if mem else 0,
                                               core_ids=core_ids, mem_ids=mem_ids))
                elif rname == RESOURCE_GPU:
                    grants += [GpuAllotment(KIND_GPU, by_uuid[u], u) for u in ra.gpus]
                elif rname.startswith(RESOURCE_MIG_PREFIX):
                    grants += [GpuAllotment(KIND_MIG, by_mig[u], node.gpus[by_mig[u]].uuid, mig_uuid=u) for u in ra.gpus]
                elif rname == RESOURCE_GPU_SHARED:
                    per: dict[str, list[int]] = {}
                    for i in ra.device_ids:
                        per.setdefault(gpu_of(i), []).append(unit_of(i))
                    grants += [GpuAllotment(KIND_TIMESLICE, by_uuid[u], u, ts_ids=(n,))
                               for u, ns in per.items() for n in ns]
        except (KeyError, IndexError, ValueError) as exc:
            raise NodeMismatchError(f"assignment of {pod} names {exc} which {node.name} does not have") from None
        containers.append(ContainerPlacement(cname, tuple(grants)))
    return Placement(pod=pod, node=node.name, containers=tuple(containers),
                     cpu_milli=request.cpu_milli if request else 0,
                     memory_bytes=request.memory_bytes if request else 0,
                     workload=request.workload if request else "")
