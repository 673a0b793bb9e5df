"""The GPUs this driver publishes: their DRA device names, attributes and capacity.

A device is named ``gpu-<index>`` (a DNS label, as ResourceSlice device names must be). Its attributes
are what a CEL selector in a DeviceClass or a claim can test (``device.attributes["gpu.tessera.io"]``):
the same facts the device plugin writes in the node's inventory, and its ``mode``.

An ``exclusive`` GPU goes to one claim whole. An ``mps`` GPU is shared (``allowMultipleAllocations``)
as consumable capacity: ``cores`` (percent of its SMs, 1..100 in steps of 1, as ``nvidia.com/mps-core``)
and ``memory`` (whole GiB, 1 GiB up to the card's, as ``nvidia.com/mps-memory``). kube-scheduler adds
up what the claims on the GPU consume and never lets it pass the GPU's 100 cores or its GiB. A request
that names neither takes the whole GPU (both policies default to all of it), still through MPS; one
that names only ``cores`` takes all the memory, so ask for both.

A ``timeslice`` GPU is shared whole, taking turns, by at most ``timeslice_replicas`` claims: shared
(``allowMultipleAllocations``) with one capacity, ``replicas``, of which every claim takes exactly one.

A ``mig`` GPU (one the admin put in MIG mode) is published as partitionable devices: one per MIG
profile and placement the GPU offers (``gpu-4-mig-1g-10gb-2``: profile 1g.10gb at memory slice 2), each
consuming from the GPU's counter set (``gpu-4-mig``) the memory slices it spans (``memory-slice-<k>``,
1 each) and its compute slices (``compute-slices``). kube-scheduler allocates devices whose counters
add up, which is exactly the set of MIG instances that fit beside each other; the driver makes the
instance at prepare and removes it at unprepare. Media-extension profiles (``+me``) are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.dradevices import MODE_EXCLUSIVE, MODE_MIG, MODE_MPS, MODE_TIMESLICE
from tessera.gpu import GpuInfo
from tessera.nvmlmig import MigPlacement

COMPUTE_SLICES = "compute-slices"
GIB_MIB = 1024


@dataclass(frozen=True)
class PublishedGpu:
    """One GPU as a DRA device, in its mode."""

    name: str
    gpu: GpuInfo
    mode: str = MODE_EXCLUSIVE
    replicas: int = 0   # a timeslice GPU's: how many claims may hold it at once

    @property
    def memory_gib(self) -> int:
        """Whole GiB of the GPU's memory: what an MPS GPU offers as ``memory``."""
        return self.gpu.memory_total_mib // GIB_MIB

    @property
    def device_node(self) -> str:
        """Its /dev/nvidia<minor> (the minor number is NVML's, not the index)."""
        if self.gpu.minor_number is None:
            raise ValueError(f"GPU {self.gpu.index} ({self.gpu.uuid}): NVML gives no minor number, so its "
                             "device node is unknown")
        return f"/dev/nvidia{self.gpu.minor_number}"


def device_name(gpu: GpuInfo) -> str:
    return f"gpu-{gpu.index}"


@dataclass(frozen=True)
class PublishedMig:
    """A MIG device the driver makes on demand on a ``mig`` GPU: one profile at one placement."""

    name: str
    parent: PublishedGpu
    placement: MigPlacement
    mode: str = MODE_MIG

    @property
    def gpu(self) -> GpuInfo:
        """The GPU it is made on."""
        return self.parent.gpu

    @property
    def counter_set(self) -> str:
        return counter_set_name(self.parent.gpu)

    def counters(self) -> dict[str, dict]:
        """What it consumes from its GPU's counter set."""
        spans = range(self.placement.start, self.placement.start + self.placement.size)
        used = {f"memory-slice-{k}": {"value": "1"} for k in spans}
        used[COMPUTE_SLICES] = {"value": str(self.placement.slices)}
        return used


Published = PublishedGpu | PublishedMig


def counter_set_name(gpu: GpuInfo) -> str:
    return f"gpu-{gpu.index}-mig"


def mig_partitions(parent: PublishedGpu, placements: list[MigPlacement]) -> list[PublishedMig]:
    """The MIG devices offered on ``parent``: every placement of every profile but media extensions."""
    found = []
    for p in placements:
        if "+" in p.profile:
            continue
        label = p.profile.replace(".", "-")
        found.append(PublishedMig(f"gpu-{parent.gpu.index}-mig-{label}-{p.start}", parent, p))
    return sorted(found, key=lambda m: (m.placement.start, -m.placement.size, m.placement.profile))


def counter_set(parent: PublishedGpu, placements: list[MigPlacement]) -> dict:
    """The ResourceSlice ``spec.sharedCounters[]`` entry of a ``mig`` GPU: each memory slice once, and
    its compute slices (the largest profile's)."""
    slots = max((p.start + p.size for p in placements), default=0)
    counters = {f"memory-slice-{k}": {"value": "1"} for k in range(slots)}
    counters[COMPUTE_SLICES] = {"value": str(max((p.slices for p in placements), default=0))}
    return {"name": counter_set_name(parent.gpu), "counters": counters}


def select_gpus(gpus: list[GpuInfo], indices: list[int], modes: dict[int, str] | None = None,
                timeslice_replicas: int = 4) -> list[PublishedGpu]:
    """The GPUs at ``indices`` (the config's ``draplugin.gpus``) in their ``modes`` (``draplugin.gpu_modes``);
    ValueError naming an index NVML does not show, or a mode given for a GPU not in ``indices``, so a typo
    is not a GPU silently left unpublished or served in the wrong mode."""
    modes = modes or {}
    by_index = {g.index: g for g in gpus}
    missing = sorted(set(indices) - set(by_index))
    if missing:
        raise ValueError(f"draplugin.gpus names GPU indices {missing}, but NVML shows {sorted(by_index)}")
    stray = sorted(set(modes) - set(indices))
    if stray:
        raise ValueError(f"draplugin.gpu_modes gives modes for GPU indices {stray}, which draplugin.gpus does not list")
    not_mig = sorted(i for i, mode in modes.items() if mode == MODE_MIG and not by_index[i].mig_enabled)
    if not_mig:
        raise ValueError(f"draplugin.gpu_modes makes GPU indices {not_mig} mig, but they are not in MIG mode; the "
                         "admin enables it (nvidia-smi -i <index> -mig 1, and a GPU reset), Tessera never does")
    return [PublishedGpu(device_name(by_index[i]), by_index[i], modes.get(i, MODE_EXCLUSIVE),
                         timeslice_replicas if modes.get(i) == MODE_TIMESLICE else 0)
            for i in sorted(set(indices))]


def semantic_version(text: str) -> str | None:
    """A driver or CUDA version as DRA's version attribute takes it (semver: ``550.54.15``,
    ``535.104.5`` for NVIDIA's ``535.104.05``); None when it is not dotted numbers."""
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    numbers = [str(int(p)) for p in parts] + ["0"] * (3 - len(parts))
    return ".".join(numbers)


def attributes(gpu: GpuInfo, driver_version: str) -> dict[str, dict]:
    """The DRA attributes of ``gpu`` (unqualified names: the API server qualifies them with the driver's
    domain). Facts NVML could not read are left out, not guessed."""
    attrs: dict[str, dict] = {
        "type": {"string": "gpu"},
        "uuid": {"string": gpu.uuid},
        "index": {"int": gpu.index},
        "productName": {"string": gpu.name},
        "migEnabled": {"bool": gpu.mig_enabled},
        "nvlinkPeers": {"int": len(gpu.nvlink_peers)},
    }
    if gpu.minor_number is not None:
        attrs["minor"] = {"int": gpu.minor_number}
    if gpu.compute_capability is not None:
        attrs["cudaComputeCapability"] = {"version": "{}.{}.0".format(*gpu.compute_capability)}
    if gpu.numa_node is not None:
        attrs["numaNode"] = {"int": gpu.numa_node}
    if gpu.pci_bus_id:
        attrs["pciBusID"] = {"string": gpu.pci_bus_id.lower()}
    version = semantic_version(driver_version)
    if version:
        attrs["driverVersion"] = {"version": version}
    return attrs


def capacity(gpu: GpuInfo) -> dict[str, dict]:
    """An exclusive GPU's capacity: its memory and streaming multiprocessors."""
    caps = {"memory": {"value": f"{gpu.memory_total_mib}Mi"}}
    if gpu.sm_count:
        caps["multiprocessors"] = {"value": str(gpu.sm_count)}
    return caps


def mps_capacity(published: PublishedGpu) -> dict[str, dict]:
    """An MPS GPU's consumable capacity: ``cores`` 1..100 and ``memory`` in whole GiB, all by default."""
    gib = published.memory_gib
    return {
        "cores": {"value": "100", "requestPolicy": {
            "default": "100", "validRange": {"min": "1", "max": "100", "step": "1"}}},
        "memory": {"value": f"{gib}Gi", "requestPolicy": {
            "default": f"{gib}Gi", "validRange": {"min": "1Gi", "max": f"{gib}Gi", "step": "1Gi"}}},
    }


def device_entry(published: PublishedGpu, driver_version: str) -> dict:
    """The ResourceSlice ``spec.devices[]`` entry of one GPU."""
    attrs = attributes(published.gpu, driver_version)
    attrs["mode"] = {"string": published.mode}
    if published.mode == MODE_MPS:
        return {"name": published.name, "attributes": attrs, "allowMultipleAllocations": True,
                "capacity": mps_capacity(published)}
    if published.mode == MODE_TIMESLICE:
        # Only ``replicas`` is capacity: a capacity without a request policy is taken whole by the first
        # claim. The card's memory is an attribute here.
        attrs["memoryMiB"] = {"int": published.gpu.memory_total_mib}
        return {"name": published.name, "attributes": attrs, "allowMultipleAllocations": True,
                "capacity": {"replicas": {"value": str(published.replicas), "requestPolicy": {
                    "default": "1", "validRange": {"min": "1", "max": "1"}}}}}
    return {"name": published.name, "attributes": attrs, "capacity": capacity(published.gpu)}


def mig_device_entry(mig: PublishedMig, driver_version: str) -> dict:
    """The ResourceSlice ``spec.devices[]`` entry of one MIG device: its GPU's attributes (the GPU's UUID
    as ``parentUUID``; the MIG device's own UUID exists only once it is made), its profile and placement,
    its memory and multiprocessors, and the counters it consumes."""
    attrs = attributes(mig.gpu, driver_version)
    attrs["parentUUID"] = attrs.pop("uuid")
    p = mig.placement
    attrs.update({"type": {"string": "mig"}, "mode": {"string": MODE_MIG}, "profile": {"string": p.profile},
                  "migPlacementStart": {"int": p.start}, "migMemorySlices": {"int": p.size},
                  "computeSlices": {"int": p.slices}})
    capacity = {"memory": {"value": f"{p.memory_mib}Mi"}}
    if p.sm_count:
        capacity["multiprocessors"] = {"value": str(p.sm_count)}
    return {"name": mig.name, "attributes": attrs, "capacity": capacity,
            "consumesCounters": [{"counterSet": mig.counter_set, "counters": mig.counters()}]}
