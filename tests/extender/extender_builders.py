"""Builders for the extender's tests: nodes from inventory documents, pods as Kubernetes JSON."""

from __future__ import annotations

from tessera.inventory import GpuHealth, GpuInventory, MigSlot, NodeInventory

from extender.placement.nodestate import NodeState
from extender.placement.grants import ContainerPlacement, Placement

GIB = 1 << 30


def make_node(name: str = "n1", gpus: int = 2, mode: str = "mps", gib: int = 16, model: str = "T4",
              cpu: int = 64000, memory_gib: int = 256, unhealthy: tuple[int, ...] = (),
              pending: tuple[int, ...] = (), mig: tuple[str, ...] = (), replicas: int = 4) -> NodeState:
    """A node of ``gpus`` identical GPUs in one mode (MIG GPUs laid out as ``mig``)."""
    inv = NodeInventory(node=name, gpus=tuple(
        GpuInventory(index=i, uuid=f"GPU-{name}-{i}", model=model, memory_mib=gib * 1024, sm_count=40, mode=mode,
                     health=GpuHealth(False, "xid 79: fallen off the bus") if i in unhealthy else GpuHealth(),
                     pending_mode="exclusive" if i in pending else None,
                     mig=tuple(MigSlot(p, f"MIG-{name}-{i}-{j}", j + 1, 0, 10240, 14, j, 1) for j, p in enumerate(mig)))
        for i in range(gpus)))
    return NodeState.from_inventory(inv, cpu, memory_gib * GIB, labels={"nvidia.com/gpu.product": model},
                                    timeslice_replicas=replicas)


def hold(node: NodeState, gpu: int, core: int, pod: str | None = None, gib: int | None = None) -> None:
    """Let some other pod hold ``core`` % (and proportional GiB) of one MPS GPU."""
    g = node.gpus[gpu]
    gib = max(1, core * g.memory_gib // 100) if gib is None else gib
    grants = node.make_grants("mps", (gpu,), core=core, memory_gib=gib)
    node.assume(Placement(pod or f"other-{gpu}-{len(node.pods)}", node.name, (ContainerPlacement("c", grants),)))


def pod(*containers: dict, name: str = "p", affinity: dict | None = None, owner: str = "",
        labels: dict | None = None, init: list | None = None, overhead: dict | None = None) -> dict:
    """A pod as the API server sends it; each container given as its ``resources.limits``."""
    meta: dict = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}", "controller": True}]
    spec: dict = {"containers": [{"name": f"c{i}", "resources": {"limits": c}} for i, c in enumerate(containers)]}
    if affinity:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": affinity}}
    if init:
        spec["initContainers"] = init
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": meta, "spec": spec}
