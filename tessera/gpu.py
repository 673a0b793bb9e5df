"""What Tessera knows about a GPU, as read through NVML: plain frozen values, no NVML inside.

:mod:`tessera.nvml` fills these in; everything else (device plugin, exporter, inventory) reads
them. A GPU that NVML could not read still has a value, with ``error`` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this machine at all (no driver, library missing, version mismatch)."""


@dataclass(frozen=True)
class NvLinkPeer:
    """Another GPU this one reaches over NVLink, directly or through NVSwitches."""

    uuid: str
    pci_bus_id: str
    links: int  # NVLink links carrying the traffic (nvidia-smi topo's NV<n>)
    via_switch: bool


PcieLevel = Literal["internal", "single", "multiple", "hostbridge", "node", "system"]
PCIE_LEVELS: tuple[PcieLevel, ...] = ("internal", "single", "multiple", "hostbridge", "node", "system")


@dataclass(frozen=True)
class PciePeer:
    """Another GPU and the closest point of the PCIe tree the two share, nearest first in PCIE_LEVELS.

    ``single``: one PCIe switch (nvidia-smi topo's PIX); ``multiple``: several switches, no host
    bridge (PXB); ``hostbridge``: one CPU host bridge (PHB); ``node``: one NUMA node (NODE);
    ``system``: across CPU sockets (SYS); ``internal``: the same board.
    """

    uuid: str
    level: PcieLevel


@dataclass(frozen=True)
class MigInstance:
    """A MIG device: one compute instance inside one GPU instance."""

    uuid: str  # MIG-...
    profile: str  # "1g.10gb", "1g.10gb+me", "1c.2g.20gb" when the compute instance is smaller
    gpu_instance_id: int
    compute_instance_id: int
    memory_mib: int
    sm_count: int
    slices: int  # GPU-instance slice count (the "1g")
    placement_start: int  # first memory slice
    placement_size: int  # memory slices occupied
    capability_minors: tuple[int, int] | None = None  # /dev/nvidia-caps/nvidia-cap<N> of its GI and CI; None: unknown
    compute_slices: int | None = None  # compute-instance slice count (the "1c" of "1c.2g.20gb"); None: unknown
    engines: tuple[tuple[str, int], ...] = ()  # shared engines by GFD's name: copy, decoder, encoder, jpeg, ofa


@dataclass(frozen=True)
class GpuInfo:
    """The inventory facts of one GPU: what it is, where it is, how it is partitioned."""

    index: int
    uuid: str
    name: str = ""
    minor_number: int | None = None  # its device node is /dev/nvidia<minor_number>; not always the index
    memory_total_mib: int = 0
    sm_count: int | None = None
    compute_capability: tuple[int, int] | None = None
    pci_bus_id: str = ""
    numa_node: int | None = None
    nvlink_peers: tuple[NvLinkPeer, ...] = ()
    pcie_peers: tuple[PciePeer, ...] = ()  # every other readable GPU; empty where NVML cannot tell
    mig_capable: bool = False  # the card can run MIG (NVML answers its MIG mode), enabled or not
    mig_enabled: bool = False
    mig_instances: tuple[MigInstance, ...] = ()
    error: str | None = None  # why this GPU could not be read; the other fields are then partial

    @property
    def healthy(self) -> bool:
        """Whether NVML read the GPU without error."""
        return self.error is None

    def pcie_level(self, uuid: str) -> PcieLevel | None:
        """The PCIe level shared with GPU ``uuid``; None where it is not known."""
        return next((p.level for p in self.pcie_peers if p.uuid == uuid), None)


@dataclass(frozen=True)
class GpuProcess:
    """A process using a GPU (or one of its MIG devices)."""

    pid: int
    used_memory_mib: int | None  # None where the driver cannot tell
    mig_uuid: str | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    mps_client: bool = False
    sm_util_pct: int | None = None  # share of SM time its kernels ran since the last read; None: not reported
    memory_util_pct: int | None = None  # share of time it read or wrote device memory since the last read


@dataclass(frozen=True)
class EccCounts:
    """ECC error counters: volatile (since driver load) and aggregate (lifetime)."""

    volatile_corrected: int
    volatile_uncorrected: int
    aggregate_corrected: int
    aggregate_uncorrected: int


@dataclass(frozen=True)
class MemoryRepair:
    """Memory repair state: page retirement (before Ampere) or row remapping (Ampere on).

    A field is None where the card does not use that mechanism.
    """

    retired_pages_single_bit: int | None = None
    retired_pages_double_bit: int | None = None
    retirement_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failed: bool | None = None


@dataclass(frozen=True)
class GpmReading:
    """GPU Performance Monitoring figures (Hopper on) between the last two reads, in percent.

    A figure is None where the driver did not compute it.
    """

    graphics_util_pct: float | None = None  # time any compute or graphics work was active
    sm_util_pct: float | None = None  # share of SMs that were busy
    sm_occupancy_pct: float | None = None  # resident warps against the theoretical maximum
    dram_bw_util_pct: float | None = None  # DRAM bandwidth used against the maximum
    tensor_util_pct: float | None = None  # time any tensor-core pipe was active


@dataclass(frozen=True)
class DeviceCounters:
    """The rest of dcgm-exporter's default counters, as NVML gives them (None: the card does not report it)."""

    memory_clock_mhz: int | None = None
    memory_temperature_c: int | None = None  # HBM cards only
    energy_mj: int | None = None  # since the driver loaded, in millijoules
    pcie_replays: int | None = None
    encoder_util_pct: int | None = None
    decoder_util_pct: int | None = None
    memory_reserved_mib: int | None = None  # held by the driver and firmware (nvmlMemory_v2_t.reserved)
    nvlink_kib: int | None = None  # NVLink data sent and received over all links since the driver loaded, KiB
    pcie_tx_bytes_per_s: int | None = None
    pcie_rx_bytes_per_s: int | None = None


@dataclass(frozen=True)
class MigUsage:
    """Memory in use on one MIG device, and its GPM figures where the driver has them."""

    uuid: str
    memory_used_mib: int
    memory_total_mib: int
    gpm: GpmReading | None = None


@dataclass(frozen=True)
class GpuSample:
    """What a GPU is doing now. Fields the card does not report are None."""

    index: int
    uuid: str
    processes: tuple[GpuProcess, ...] = ()
    gpu_util_pct: int | None = None  # not reported by a MIG-enabled GPU
    memory_util_pct: int | None = None
    memory_used_mib: int | None = None
    memory_free_mib: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    sm_clock_mhz: int | None = None
    ecc: EccCounts | None = None
    repair: MemoryRepair | None = None
    mig: tuple[MigUsage, ...] = ()
    gpm: GpmReading | None = None  # None before the second read, and on GPUs without GPM (before Hopper)
    counters: DeviceCounters | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Whether NVML read the GPU without error."""
        return self.error is None


EventKind = Literal["xid", "ecc_single_bit", "ecc_double_bit", "other"]


@dataclass(frozen=True)
class GpuEvent:
    """Something the driver reported about a GPU: an Xid error or an ECC error."""

    kind: EventKind
    gpu_index: int | None
    gpu_uuid: str | None
    xid: int | None = None
    gpu_instance_id: int | None = None  # set when the driver tied the event to one MIG instance
    compute_instance_id: int | None = None
    event_type: int = 0  # NVML's raw event type bit
