"""How a node's GPUs are wired to each other, read through NVML: NVLink peers and PCIe levels.

Part of Tessera's NVML layer (with :mod:`tessera.nvml`, which calls it from ``read_gpus``):

- NVLink: each active link's remote end, a GPU (direct links, counted per peer) or an NVSwitch
  (every GPU on the fabric that NVML says it can reach over NVLink is a peer).
- PCIe: for each pair of GPUs, the closest point of the PCIe tree they share
  (``nvmlDeviceGetTopologyCommonAncestor``: one switch, several switches, the host bridge, the
  NUMA node, or across CPU sockets), as ``nvidia-smi topo -m`` prints it. PCIe wiring does not
  change while the driver is loaded, so :class:`PcieTopology` asks once per pair of GPUs.
"""

from __future__ import annotations

from dataclasses import replace

import pynvml
from pynvml import NVMLError

from tessera.gpu import GpuInfo, NvLinkPeer, PcieLevel, PciePeer
from tessera.log import get_logger

log = get_logger("nvml")

_ABSENT = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
LEVEL_NAMES: dict[int, PcieLevel] = {
    pynvml.NVML_TOPOLOGY_INTERNAL: "internal",
    pynvml.NVML_TOPOLOGY_SINGLE: "single",
    pynvml.NVML_TOPOLOGY_MULTIPLE: "multiple",
    pynvml.NVML_TOPOLOGY_HOSTBRIDGE: "hostbridge",
    pynvml.NVML_TOPOLOGY_NODE: "node",
    pynvml.NVML_TOPOLOGY_SYSTEM: "system",
}

Wiring = dict[int, tuple[object, dict[str, int], int]]  # GPU index -> (handle, direct links per bus id, switch links)


def text(value) -> str:
    """A string NVML returned as bytes or str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def bus(value) -> str:
    """A PCI bus id as NVML writes it: 8-digit domain, upper case (``00000000:07:00.0``)."""
    domain, _, rest = text(value).upper().partition(":")
    return f"{domain.zfill(8)}:{rest}"


def nvlink_ends(handle) -> tuple[dict[str, int], int]:
    """Active NVLink links of one GPU: per remote GPU bus id, and how many go to NVSwitches."""
    direct: dict[str, int] = {}
    switch_links = 0
    for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
        try:
            active = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except (*_ABSENT, pynvml.NVMLError_InvalidArgument):
            break
        if not active:
            continue
        try:
            kind = pynvml.nvmlDeviceGetNvLinkRemoteDeviceType(handle, link)
        except _ABSENT:
            kind = pynvml.NVML_NVLINK_DEVICE_TYPE_GPU
        if kind == pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH:
            switch_links += 1
        elif kind == pynvml.NVML_NVLINK_DEVICE_TYPE_GPU:
            remote = bus(pynvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId)
            direct[remote] = direct.get(remote, 0) + 1
    return direct, switch_links


def _nvlink_peers(info: GpuInfo, wiring: Wiring, infos: list[GpuInfo]) -> tuple[NvLinkPeer, ...]:
    handle, direct, switch_links = wiring[info.index]
    by_bus = {i.pci_bus_id: i for i in infos if i.healthy}
    peers = [NvLinkPeer(by_bus[b].uuid, b, n, False) for b, n in sorted(direct.items()) if b in by_bus]
    for other in infos:
        if not switch_links or other.index == info.index or other.index not in wiring or not wiring[other.index][2]:
            continue
        try:
            status = pynvml.nvmlDeviceGetP2PStatus(handle, wiring[other.index][0], pynvml.NVML_P2P_CAPS_INDEX_NVLINK)
        except NVMLError:
            continue
        if status == pynvml.NVML_P2P_STATUS_OK:
            peers.append(NvLinkPeer(other.uuid, other.pci_bus_id, switch_links, True))
    return tuple(peers)


class PcieTopology:
    """PCIe levels between GPUs, asked of NVML once per pair (keyed by both UUIDs) and remembered."""

    def __init__(self) -> None:
        self._levels: dict[frozenset[str], PcieLevel | None] = {}

    def level(self, a: GpuInfo, handle_a, b: GpuInfo, handle_b) -> PcieLevel | None:
        """The level two readable GPUs share; None where NVML cannot tell (remembered only when absent)."""
        key = frozenset((a.uuid, b.uuid))
        if key in self._levels:
            return self._levels[key]
        try:
            raw = pynvml.nvmlDeviceGetTopologyCommonAncestor(handle_a, handle_b)
        except _ABSENT:
            self._levels[key] = None  # this platform does not say; do not ask again
            return None
        except NVMLError as err:
            log.warning("gpu_topology_read_failed", gpu=a.index, peer=b.index, reason=str(err))
            return None  # the GPU failed; ask again on the next read
        level = LEVEL_NAMES.get(int(raw))
        if level is None:
            log.warning("gpu_topology_level_unknown", gpu=a.index, peer=b.index, level=int(raw))
        self._levels[key] = level
        return level

    def peers(self, info: GpuInfo, wiring: Wiring, infos: list[GpuInfo]) -> tuple[PciePeer, ...]:
        """The PCIe level from ``info`` to every other GPU read well in this pass."""
        found = []
        for other in infos:
            if other.index == info.index or other.index not in wiring:
                continue
            level = self.level(info, wiring[info.index][0], other, wiring[other.index][0])
            if level is not None:
                found.append(PciePeer(other.uuid, level))
        return tuple(found)


def with_peers(infos: list[GpuInfo], wiring: Wiring, pcie: PcieTopology) -> list[GpuInfo]:
    """``infos`` with NVLink and PCIe peers filled in for every GPU read well (``wiring`` holds those)."""
    out = []
    for info in infos:
        if info.index in wiring:
            info = replace(info, nvlink_peers=_nvlink_peers(info, wiring, infos),
                           pcie_peers=pcie.peers(info, wiring, infos))
        out.append(info)
    return out


def numa_node_path(bus: str) -> str:
    """The kernel's ``numa_node`` file of the PCI device at NVML's bus id ``00000000:07:00.0``."""
    return f"/sys/bus/pci/devices/{bus[4:].lower()}/numa_node"
