"""The prometheus_client collector that turns the last :class:`Snapshot` into metric families.

It reads only the snapshot: a scrape never calls NVML. Label sets come from the snapshot alone,
so a container that is gone is gone from the output too (nothing accumulates across collections).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector

from exporter.metrics import CATALOGUE, is_dcgm, model_label, spec
from exporter.podresources import ContainerRef
from exporter.snapshot import GpuReading, Snapshot
from exporter.xidtext import xid_message
from tessera.gpu import DeviceCounters, GpmReading

__all__ = ["SnapshotCollector", "render"]

MIB = 1 << 20


class _Families:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, name: str, labels: dict[str, str], value: float | int | None) -> None:
        if value is None:
            return
        family = self.metrics.get(name)
        if family is None:
            s = spec(name)
            family = self.metrics[name] = Metric(name, s.help, s.type)
        family.add_sample(name + "_total" if family.type == "counter" else name, labels, float(value))


def _pod_labels(holders: tuple[ContainerRef, ...]) -> dict[str, str]:
    """Pod labels where exactly one container holds the device; empty where it is shared or idle."""
    if len(holders) == 1:
        ref = holders[0]
        return {"pod": ref.pod, "namespace": ref.namespace, "container": ref.container}
    return {"pod": "", "namespace": "", "container": ""}


def _ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100.0


def _gpm_metrics(out: _Families, labels: dict[str, str], gpm: GpmReading | None) -> None:
    if gpm is not None:
        out.add("DCGM_FI_PROF_GR_ENGINE_ACTIVE", labels, _ratio(gpm.graphics_util_pct))
        out.add("DCGM_FI_PROF_SM_OCCUPANCY", labels, _ratio(gpm.sm_occupancy_pct))
        out.add("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", labels, _ratio(gpm.tensor_util_pct))
        out.add("DCGM_FI_PROF_DRAM_ACTIVE", labels, _ratio(gpm.dram_bw_util_pct))


def _counter_metrics(out: _Families, labels: dict[str, str], c: DeviceCounters | None) -> None:
    if c is not None:
        out.add("DCGM_FI_DEV_MEM_CLOCK", labels, c.memory_clock_mhz)
        out.add("DCGM_FI_DEV_MEMORY_TEMP", labels, c.memory_temperature_c)
        out.add("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels, c.energy_mj)
        out.add("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", labels, c.pcie_replays)
        out.add("DCGM_FI_DEV_ENC_UTIL", labels, c.encoder_util_pct)
        out.add("DCGM_FI_DEV_DEC_UTIL", labels, c.decoder_util_pct)
        out.add("DCGM_FI_DEV_FB_RESERVED", labels, c.memory_reserved_mib)
        out.add("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", labels, c.nvlink_kib)
        out.add("DCGM_FI_PROF_PCIE_TX_BYTES", labels, c.pcie_tx_bytes_per_s)
        out.add("DCGM_FI_PROF_PCIE_RX_BYTES", labels, c.pcie_rx_bytes_per_s)


def _gpu_metrics(out: _Families, reading: GpuReading, hostname: str, model: str, driver: str) -> None:
    info, sample = reading.info, reading.sample
    gpu_labels = {"gpu": str(info.index), "UUID": info.uuid, "Hostname": hostname}
    out.add("tessera_gpu_stale", gpu_labels, int(reading.stale))
    out.add("tessera_gpu_last_collected_timestamp_seconds", gpu_labels, reading.collected_at)
    ledger = reading.ledger
    if ledger is not None:
        out.add("tessera_gpu_health", {**gpu_labels, "reason": ledger.reason}, int(ledger.healthy))
        if ledger.mode:
            out.add("tessera_gpu_mode", {**gpu_labels, "mode": ledger.mode}, 1)
        for resource, n in sorted(ledger.grants.items()):
            out.add("tessera_gpu_grants", {**gpu_labels, "resource": resource}, n)
        for resource, n in sorted(ledger.allocatable.items()):
            out.add("tessera_gpu_allocatable_units", {**gpu_labels, "resource": resource}, n)
            out.add("tessera_gpu_free_units", {**gpu_labels, "resource": resource}, ledger.free.get(resource, 0))
    if sample is None:
        return
    dcgm = {"gpu": str(info.index), "UUID": info.uuid, "pci_bus_id": info.pci_bus_id,
            "device": f"nvidia{info.index}", model: info.name, "Hostname": hostname,
            "DCGM_FI_DRIVER_VERSION": driver, **_pod_labels(reading.holders)}
    out.add("DCGM_FI_DEV_SM_CLOCK", dcgm, sample.sm_clock_mhz)
    out.add("DCGM_FI_DEV_GPU_TEMP", dcgm, sample.temperature_c)
    out.add("DCGM_FI_DEV_POWER_USAGE", dcgm, sample.power_w)
    out.add("DCGM_FI_DEV_GPU_UTIL", dcgm, sample.gpu_util_pct)
    out.add("DCGM_FI_DEV_MEM_COPY_UTIL", dcgm, sample.memory_util_pct)
    out.add("DCGM_FI_DEV_XID_ERRORS", {**dcgm, "err_code": str(reading.last_xid),
                                       "err_msg": xid_message(reading.last_xid)}, reading.last_xid)
    _gpm_metrics(out, dcgm, sample.gpm)
    _counter_metrics(out, dcgm, sample.counters)
    if info.mig_enabled:
        instances = {m.uuid: m for m in info.mig_instances}
        for usage in sample.mig:
            mig = instances.get(usage.uuid)
            if mig is None:
                continue
            labels = {**dcgm, "GPU_I_PROFILE": mig.profile, "GPU_I_ID": str(mig.gpu_instance_id),
                      **_pod_labels(reading.mig_holders.get(usage.uuid, ()))}
            out.add("DCGM_FI_DEV_FB_USED", labels, usage.memory_used_mib)
            out.add("DCGM_FI_DEV_FB_FREE", labels, usage.memory_total_mib - usage.memory_used_mib)
            _gpm_metrics(out, labels, usage.gpm)
    else:
        out.add("DCGM_FI_DEV_FB_USED", dcgm, sample.memory_used_mib)
        out.add("DCGM_FI_DEV_FB_FREE", dcgm, sample.memory_free_mib)
    if sample.ecc is not None:
        out.add("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", dcgm, sample.ecc.volatile_corrected)
        out.add("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", dcgm, sample.ecc.volatile_uncorrected)
        out.add("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", dcgm, sample.ecc.aggregate_corrected)
        out.add("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", dcgm, sample.ecc.aggregate_uncorrected)
    repair = sample.repair
    if repair is not None:
        out.add("DCGM_FI_DEV_RETIRED_SBE", dcgm, repair.retired_pages_single_bit)
        out.add("DCGM_FI_DEV_RETIRED_DBE", dcgm, repair.retired_pages_double_bit)
        out.add("DCGM_FI_DEV_RETIRED_PENDING", dcgm,
                None if repair.retirement_pending is None else int(repair.retirement_pending))
        out.add("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", dcgm, repair.remapped_rows_uncorrectable)
        out.add("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", dcgm, repair.remapped_rows_correctable)
        out.add("DCGM_FI_DEV_ROW_REMAP_FAILURE", dcgm, None if repair.remap_failed is None else int(repair.remap_failed))


def collect_snapshot(snapshot: Snapshot, dcgm_compatible_labels: bool = True,
                     dcgm_series: bool = True) -> Iterator[Metric]:
    """Every metric family of one snapshot, in catalogue order (``modelName`` or ``model_name``);
    without ``dcgm_series``, only Tessera's own (dcgm-exporter serves the ``DCGM_*`` ones)."""
    out = _Families()
    host = snapshot.hostname
    for reading in snapshot.gpus:
        _gpu_metrics(out, reading, host, model_label(dcgm_compatible_labels), snapshot.driver_version)
    index_of = {r.info.uuid: str(r.info.index) for r in snapshot.gpus}
    gi_of = {m.uuid: str(m.gpu_instance_id) for r in snapshot.gpus for m in r.info.mig_instances}
    for uuid, used in sorted(snapshot.unattributed.items()):
        out.add("tessera_gpu_memory_unattributed_bytes", {"gpu": index_of.get(uuid, ""), "UUID": uuid,
                                                          "Hostname": host}, used)
    for (uuid, xid), n in sorted(snapshot.xid_counts.items()):
        out.add("tessera_gpu_xid_errors", {"gpu": index_of.get(uuid, ""), "UUID": uuid, "Hostname": host,
                                           "xid": str(xid)}, n)
    for u in snapshot.containers:
        labels = {"namespace": u.ref.namespace, "pod": u.ref.pod, "container": u.ref.container,
                  "gpu": index_of.get(u.gpu_uuid, ""), "UUID": u.gpu_uuid,
                  "GPU_I_ID": gi_of.get(u.mig_uuid, "") if u.mig_uuid else "", "Hostname": host}
        out.add("tessera_container_gpu_memory_used_bytes", labels, u.used_bytes)
        out.add("tessera_container_gpu_processes", labels, u.processes)
        out.add("tessera_container_gpu_utilization_ratio", labels, u.utilization_ratio)
        out.add("tessera_container_gpu_core_grant_ratio", labels, u.grant_core_ratio)
        if u.grant_memory_bytes is not None:
            out.add("tessera_container_gpu_memory_grant_bytes", labels, u.grant_memory_bytes)
            out.add("tessera_container_gpu_memory_overuse_bytes", labels, u.overuse_bytes)
            out.add("tessera_container_over_grant", labels, int(u.overuse_bytes > 0))
    c = snapshot.counts
    out.add("tessera_exporter_collections", {}, c.collections)
    out.add("tessera_exporter_collection_duration_seconds", {}, snapshot.duration_s)
    out.add("tessera_exporter_last_collection_timestamp_seconds", {}, snapshot.collected_at)
    out.add("tessera_exporter_podresources_up", {}, int(snapshot.podresources_up))
    out.add("tessera_exporter_podresources_errors", {}, c.podresources_errors)
    out.add("tessera_exporter_nvml_errors", {}, c.nvml_errors)
    out.add("tessera_exporter_inventory_errors", {}, c.inventory_errors)
    out.add("tessera_exporter_events", {}, c.events_sent)
    out.add("tessera_exporter_event_errors", {}, c.event_errors)
    for s in CATALOGUE:
        if s.name in out.metrics and (dcgm_series or not is_dcgm(s.name)):
            yield out.metrics[s.name]


class SnapshotCollector:
    """A prometheus_client collector over whatever snapshot ``current()`` returns (None: nothing yet)."""

    def __init__(self, current: Callable[[], Snapshot | None], dcgm_compatible_labels: bool = True,
                 dcgm_series: bool = True) -> None:
        self._current = current
        self._dcgm_compatible_labels = dcgm_compatible_labels
        self._dcgm_series = dcgm_series

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()
        if snapshot is not None:
            yield from collect_snapshot(snapshot, self._dcgm_compatible_labels, self._dcgm_series)


def render(snapshot: Snapshot, with_process: bool = True, dcgm_compatible_labels: bool = True,
           dcgm_series: bool = True) -> bytes:
    """The text exposition of one snapshot (plus the exporter's own process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snapshot, dcgm_compatible_labels, dcgm_series))
    if with_process:
        ProcessCollector(registry=registry)
    return generate_latest(registry)
