"""One collection's results: what every GPU and container was doing, frozen for scrapes to read.

The poller builds a :class:`Snapshot` per collection and swaps it in whole; a scrape renders the
last one and never touches NVML, the kubelet or the API server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.attribution import ContainerUsage
from exporter.gpuledger import GpuLedger
from exporter.podresources import ContainerRef
from tessera.gpu import GpuInfo, GpuSample

__all__ = ["ExporterCounts", "GpuReading", "Snapshot"]


@dataclass(frozen=True)
class GpuReading:
    """One GPU as last read: the last good sample, when it was taken, and whether it is stale now."""

    info: GpuInfo
    sample: GpuSample | None  # None where the GPU was never read successfully
    collected_at: float  # unix time of ``sample`` (0 if never)
    stale: bool  # this collection failed; the values are the last good ones
    last_xid: int = 0
    ledger: GpuLedger | None = None
    holders: tuple[ContainerRef, ...] = ()  # containers holding the GPU (or a share of it)
    mig_holders: dict[str, tuple[ContainerRef, ...]] = field(default_factory=dict)  # MIG UUID -> holders


@dataclass(frozen=True)
class ExporterCounts:
    """The exporter's own counters, cumulative since it started."""

    collections: int = 0
    podresources_errors: int = 0
    nvml_errors: int = 0
    inventory_errors: int = 0
    events_sent: int = 0
    event_errors: int = 0


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows."""

    hostname: str
    collected_at: float
    duration_s: float
    gpus: tuple[GpuReading, ...]
    containers: tuple[ContainerUsage, ...]
    unattributed: dict[str, int]  # GPU UUID -> bytes held by processes no container claims
    xid_counts: dict[tuple[str, int], int]  # (GPU UUID, Xid) -> events since start
    podresources_up: bool
    counts: ExporterCounts
    driver_version: str = ""  # the DCGM_FI_DRIVER_VERSION label ("" where NVML did not say)
