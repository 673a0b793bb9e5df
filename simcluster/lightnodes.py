"""Light nodes: Node objects with their GPU inventory and capacity, and no kubelet or plugin behind them.

The placement benchmarks need the trace's 1,213 nodes in one process; starting a kubelet and a device
plugin for each would measure the simulation, not Tessera. A light node carries what a device plugin
would have written (the inventory annotation, the GFD-style labels, the Tessera resources in capacity),
computed from the same fake-GPU catalog, so the extender sees the same cluster either way.
"""

from __future__ import annotations

import uuid

from simcluster.cluster import ClusterDescription, NodeSpec
from simcluster.fakenodes import node_description
from tessera import (
    ANNOTATION_INVENTORY, LABEL_GPU_MODE, RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE,
    RESOURCE_MPS_MEMORY, mig_resource_name,
)
from tessera.fakenvml import find_model, parse_description
from tessera.inventory import GpuInventory, MigSlot, NodeInventory

_NAMESPACE = uuid.UUID("0b7c1f0e-2d5a-4f3e-8c61-7a9d2e4b5c13")
DEFAULT_TIMESLICE_REPLICAS = 4


def _catalog_model(name: str):
    try:
        return find_model(name)
    except ValueError:
        return None


def light_inventory(spec: NodeSpec) -> NodeInventory:
    """The inventory a device plugin would write for this node (identities as its fake NVML gives them)."""
    model = _catalog_model(spec.model)
    if model is None:
        # A model outside the catalog (the trace's P100, G2, ...): what the trace says, no more.
        memory_mib = (spec.gpu_memory_gib or 16) * 1024
        gpus = tuple(GpuInventory(index=i, uuid="GPU-" + str(uuid.uuid5(_NAMESPACE, f"{spec.name}/{i}")),
                                  model=spec.model, memory_mib=memory_mib, sm_count=0, mode=spec.mode,
                                  numa_node=0 if i < max(spec.gpus // 2, 1) else 1)
                     for i in range(spec.gpus))
        return NodeInventory(node=spec.name, gpus=gpus)
    described = parse_description(node_description(spec), source=f"light node {spec.name}")
    gpus = []
    for gpu, links in zip(described.gpus, described.links):
        peers = tuple(sorted({end.index for end in links if end.kind == "gpu"}))
        if not peers and model.nvswitch:
            peers = tuple(i for i in range(spec.gpus) if i != gpu.index)  # all-to-all through NVSwitch
        mig = tuple(MigSlot(profile=m.placed.profile.name, uuid=m.uuid, gi_id=m.gpu_instance_id, ci_id=0,
                            memory_mib=m.placed.profile.memory_mib, sm_count=m.placed.profile.sm_count,
                            placement_start=m.placed.start, placement_size=m.placed.size) for m in gpu.mig)
        gpus.append(GpuInventory(index=gpu.index, uuid=gpu.uuid, model=model.nvml_name, memory_mib=model.memory_mib,
                                 sm_count=model.sm_count, mode=spec.mode, numa_node=gpu.numa_node,
                                 nvlink_peers=peers, mig=mig))
    return NodeInventory(node=spec.name, gpus=tuple(gpus))


def node_resources(inventory: NodeInventory, timeslice_replicas: int = DEFAULT_TIMESLICE_REPLICAS) -> dict[str, int]:
    """Tessera's extended resources of a node, counted as the device plugin advertises them."""
    out: dict[str, int] = {}
    for gpu in inventory.gpus:
        if gpu.mode == "exclusive":
            keys = {RESOURCE_GPU: 1}
        elif gpu.mode == "mps":
            keys = {RESOURCE_MPS_CORE: 100, RESOURCE_MPS_MEMORY: gpu.memory_gib}
        elif gpu.mode == "timeslice":
            keys = {RESOURCE_GPU_SHARED: timeslice_replicas}
        else:
            keys = {}
            for slot in gpu.mig:
                name = mig_resource_name(slot.profile)
                keys[name] = keys.get(name, 0) + 1
        for key, value in keys.items():
            out[key] = out.get(key, 0) + value
    return out


def light_node_object(spec: NodeSpec, timeslice_replicas: int = DEFAULT_TIMESLICE_REPLICAS) -> dict:
    """The Node object of a light node: labels, inventory annotation, capacity and a Ready condition."""
    inventory = light_inventory(spec)
    first = inventory.gpus[0]
    resources = {k: str(v) for k, v in node_resources(inventory, timeslice_replicas).items()}
    base = {"cpu": f"{spec.cpu_milli}m", "memory": f"{spec.memory_mib}Mi", "pods": "110"}
    labels = {"kubernetes.io/hostname": spec.name, LABEL_GPU_MODE: spec.mode,
              "nvidia.com/gpu.product": first.model.replace(" ", "-"), "nvidia.com/gpu.count": str(spec.gpus),
              "nvidia.com/gpu.memory": str(first.memory_mib), **spec.labels}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels, "annotations": {ANNOTATION_INVENTORY: inventory.to_json()}},
        "status": {"capacity": {**base, **resources}, "allocatable": {**base, **resources},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "LightNode",
                                   "message": "simulated without a kubelet"}]},
    }


def add_light_nodes(registry, description: ClusterDescription) -> int:
    """Create every node of ``description`` as a light node through the API server's registry."""
    for spec in description.nodes:
        registry.create("nodes", light_node_object(spec))
    return len(description.nodes)


__all__ = ["add_light_nodes", "light_inventory", "light_node_object", "node_resources"]
