"""The GPUs this driver publishes: their DRA device names, attributes and capacity.

A device is named ``gpu-<index>`` (a DNS label, as ResourceSlice device names must be). Its attributes
are what a CEL selector in a DeviceClass or a claim can test (``device.attributes["gpu.tessera.io"]``):
the same facts the device plugin writes in the node's inventory.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.gpu import GpuInfo

DRIVER_NAME = "gpu.tessera.io"


@dataclass(frozen=True)
class PublishedGpu:
    """One whole GPU as a DRA device."""

    name: str
    gpu: GpuInfo

    @property
    def device_node(self) -> str:
        """Its /dev/nvidia<minor> (the minor number is NVML's, not the index)."""
        if self.gpu.minor_number is None:
            raise ValueError(f"GPU {self.gpu.index} ({self.gpu.uuid}): NVML gives no minor number, so its "
                             "device node is unknown")
        return f"/dev/nvidia{self.gpu.minor_number}"


def device_name(gpu: GpuInfo) -> str:
    return f"gpu-{gpu.index}"


def select_gpus(gpus: list[GpuInfo], indices: list[int]) -> list[PublishedGpu]:
    """The GPUs at ``indices`` (the config's ``draplugin.gpus``); ValueError naming an index NVML does not
    show, so a typo is not a GPU silently left unpublished."""
    by_index = {g.index: g for g in gpus}
    missing = sorted(set(indices) - set(by_index))
    if missing:
        raise ValueError(f"draplugin.gpus names GPU indices {missing}, but NVML shows {sorted(by_index)}")
    return [PublishedGpu(device_name(by_index[i]), by_index[i]) for i in sorted(set(indices))]


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
    """The GPU's capacity: its memory and streaming multiprocessors."""
    caps = {"memory": {"value": f"{gpu.memory_total_mib}Mi"}}
    if gpu.sm_count:
        caps["multiprocessors"] = {"value": str(gpu.sm_count)}
    return caps


def device_entry(published: PublishedGpu, driver_version: str) -> dict:
    """The ResourceSlice ``spec.devices[]`` entry of one GPU."""
    return {"name": published.name, "attributes": attributes(published.gpu, driver_version),
            "capacity": capacity(published.gpu)}
