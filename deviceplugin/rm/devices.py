"""The devices of each resource, derived from the GPUs and their modes.

One GPU's devices belong to exactly one mode's resources, so no resource is advertised twice for
one GPU: ``exclusive`` -> ``nvidia.com/gpu``; ``mig`` -> ``nvidia.com/mig-<profile>`` per instance;
``mps`` -> 100 ``nvidia.com/mps-core`` and floor(GiB) ``nvidia.com/mps-memory``; ``timeslice`` ->
``timeslice_replicas`` of ``nvidia.com/gpu.shared``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.deviceids import CORE, MAX_ID_LENGTH, MEM, TS, share_id
from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY, mig_resource_name
from tessera.gpu import GpuInfo, MigInstance

CORES_PER_GPU = 100


@dataclass(frozen=True)
class Device:
    """One device ID the kubelet counts, and the GPU (or MIG instance) behind it."""

    id: str
    resource: str
    gpu_index: int
    gpu_uuid: str
    numa_node: int | None
    mig: MigInstance | None = None
    gpu_minor: int | None = None  # the GPU's device minor (/dev/nvidia<minor>); None where NVML could not tell

    @property
    def visible_uuid(self) -> str:
        """What NVIDIA_VISIBLE_DEVICES names for this device: the MIG UUID or the GPU UUID."""
        return self.mig.uuid if self.mig else self.gpu_uuid


def gpu_devices(gpu: GpuInfo, mode: str, replicas: int) -> list[Device]:
    """The devices one GPU offers in ``mode``."""
    def dev(device_id: str, resource: str, mig: MigInstance | None = None) -> Device:
        if len(device_id) > MAX_ID_LENGTH:
            raise ValueError(f"device ID {device_id!r} is longer than {MAX_ID_LENGTH} characters")
        return Device(device_id, resource, gpu.index, gpu.uuid, gpu.numa_node, mig, gpu.minor_number)

    if mode == "mig":
        return [dev(m.uuid, mig_resource_name(m.profile), m) for m in gpu.mig_instances]
    if mode == "mps":
        return ([dev(share_id(gpu.uuid, CORE, n), RESOURCE_MPS_CORE) for n in range(CORES_PER_GPU)]
                + [dev(share_id(gpu.uuid, MEM, n), RESOURCE_MPS_MEMORY) for n in range(gpu.memory_total_mib // 1024)])
    if mode == "timeslice":
        return [dev(share_id(gpu.uuid, TS, n), RESOURCE_GPU_SHARED) for n in range(replicas)]
    return [dev(gpu.uuid, RESOURCE_GPU)]


def node_devices(gpus: list[GpuInfo], modes: dict[int, str], replicas: int) -> dict[str, dict[str, Device]]:
    """Resource -> device ID -> Device for the whole node (only resources that have devices)."""
    result: dict[str, dict[str, Device]] = {}
    for gpu in sorted(gpus, key=lambda g: g.index):
        for device in gpu_devices(gpu, modes.get(gpu.index, "exclusive"), replicas):
            result.setdefault(device.resource, {})[device.id] = device
    return result
