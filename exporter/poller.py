"""The background collection: NVML, the kubelet, the hook's records and the ledger, every ``interval_s``.

Each collection builds a whole :class:`Snapshot` and hands it to ``publish`` (which renders it for
scrapes). A GPU whose reading fails keeps its last good values, marked stale, and the others go
on; the pod-resources socket missing means no pod labels and one more error counted, never a
crash. A second thread waits on NVML's event set for Xid errors. Nothing here keeps state per
container beyond the current collection, so memory stays flat as pods come and go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from exporter.attribution import ProcessOwners, attribute
from exporter.gpuledger import InventoryReader, gpu_ledgers
from exporter.overuse import OveruseTracker
from exporter.podresources import ContainerRef, PodDevices, PodResourcesClient, PodResourcesUnavailable
from exporter.records import RecordReader, ref_of
from exporter.snapshot import ExporterCounts, GpuReading, Snapshot
from tessera.backoff import Backoff
from tessera.gpu import GpuInfo, GpuSample
from tessera.log import get_logger
from tessera.nvml import Nvml

__all__ = ["Poller"]

log = get_logger("exporter")
INVENTORY_REFRESH_S = 60.0
XID_INVENTORY_WATCH_S = 15.0


class Poller:
    """Collects on a background thread; ``snapshot`` is the last collection (None before the first)."""

    def __init__(self, nvml: Nvml, pod_resources: PodResourcesClient, records: RecordReader, tracker: OveruseTracker,
                 *, hostname: str, interval_s: float, proc_root: str = "/proc",
                 inventory: InventoryReader | None = None,
                 publish: Callable[[Snapshot], None] | None = None) -> None:
        self.nvml, self.pod_resources, self.records, self.tracker = nvml, pod_resources, records, tracker
        self.hostname, self.interval_s, self.proc_root = hostname, interval_s, proc_root
        self.inventory = inventory
        self.publish = publish
        self.snapshot: Snapshot | None = None
        self._infos: list[GpuInfo] = []
        self._infos_at = float("-inf")
        self._last_good: dict[int, tuple[GpuSample, float]] = {}
        self._xid_lock = threading.Lock()
        self._xid_counts: dict[tuple[str, int], int] = {}
        self._last_xid: dict[str, int] = {}
        self._counts = ExporterCounts()
        self._podresources_failing = False
        self._driver_version = nvml.driver_version()  # open() read it already; it cannot change while NVML is open
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Collect once now (so the first scrape has data), then keep collecting in the background."""
        self.collect()
        for target, name in ((self._run, "exporter-poller"), (self._watch_events, "exporter-xid")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.collect()
            except Exception:  # noqa: BLE001 - a bug in one collection must not end collecting
                log.exception("collection_failed")

    def _watch_events(self) -> None:
        retry = Backoff(base_s=1.0)
        while not self._stop.is_set():
            try:
                events = self.nvml.events(1.0)
            except Exception as err:  # noqa: BLE001 - NVML event sets can fail; wait and retry
                log.warning("gpu_event_wait_failed", error=str(err)[:300])
                retry.wait(self._stop)
                continue
            retry.reset()
            with self._xid_lock:
                for event in events:
                    if event.kind == "xid" and event.gpu_uuid and event.xid is not None:
                        key = (event.gpu_uuid, event.xid)
                        self._xid_counts[key] = self._xid_counts.get(key, 0) + 1
                        self._last_xid[event.gpu_uuid] = event.xid
                        if self.inventory is not None:
                            # The device plugin records the GPU's health in the inventory within a
                            # second of the Xid: read it each collection for a while, not in 30 s.
                            self.inventory.refresh_for(XID_INVENTORY_WATCH_S)

    # ---- one collection -------------------------------------------------------------------------
    def collect(self) -> Snapshot:
        """Read everything once, publish and return the snapshot."""
        started = time.monotonic()
        now = time.time()
        samples = self.nvml.sample_gpus()
        if self._infos_due(samples):
            self._infos = self.nvml.read_gpus()
            self._infos_at = time.monotonic()
        devices = self._read_pod_resources()
        records = self.records.read()
        usages, unattributed = attribute(self._infos, samples, records, devices,
                                         ProcessOwners(records, self.proc_root))
        self.tracker.update(usages, now)
        inventory = self.inventory.get() if self.inventory else None
        errors = {s.uuid: s.error for s in samples if not s.healthy and s.uuid}
        ledgers = gpu_ledgers(self._infos, errors, devices, inventory)
        holders = self._holders(devices, records)
        readings = self._readings(samples, now, ledgers, holders)
        with self._xid_lock:
            xid_counts = dict(self._xid_counts)
        self._counts = replace(
            self._counts, collections=self._counts.collections + 1,
            nvml_errors=self._counts.nvml_errors + sum(1 for s in samples if not s.healthy),
            inventory_errors=self.inventory.errors if self.inventory else 0,
            events_sent=self.tracker.events_sent, event_errors=self.tracker.event_errors)
        snapshot = Snapshot(
            hostname=self.hostname, collected_at=now, duration_s=time.monotonic() - started,
            gpus=tuple(readings), containers=tuple(usages), unattributed=unattributed, xid_counts=xid_counts,
            podresources_up=devices is not None, counts=self._counts, driver_version=self._driver_version)
        self.snapshot = snapshot
        if self.publish is not None:
            self.publish(snapshot)
        return snapshot

    def _infos_due(self, samples: list[GpuSample]) -> bool:
        if time.monotonic() - self._infos_at > INVENTORY_REFRESH_S or len(self._infos) != len(samples):
            return True
        for sample, info in zip(samples, self._infos):
            if sample.healthy and (not info.healthy or sample.uuid != info.uuid
                                   or {m.uuid for m in sample.mig} != {m.uuid for m in info.mig_instances}):
                return True
        return False

    def _read_pod_resources(self) -> PodDevices | None:
        try:
            devices = self.pod_resources.read()
        except PodResourcesUnavailable as err:
            self._counts = replace(self._counts, podresources_errors=self._counts.podresources_errors + 1)
            if not self._podresources_failing:
                log.warning("pod_resources_unavailable", reason=str(err))
            self._podresources_failing = True
            return None
        if self._podresources_failing:
            log.info("pod_resources_available", socket=self.pod_resources.socket_path)
        self._podresources_failing = False
        return devices

    @staticmethod
    def _holders(devices: PodDevices | None, records) -> dict[str, set[ContainerRef]]:
        found = devices.holders() if devices is not None else {}
        for record in records:
            for grant in record.grants:
                for uuid in grant.uuids:
                    found.setdefault(uuid, set()).add(ref_of(record))
        return found

    def _readings(self, samples: list[GpuSample], now: float, ledgers, holders) -> list[GpuReading]:
        infos = {i.index: i for i in self._infos}
        readings = []
        live = set()
        for sample in samples:
            live.add(sample.index)
            info = infos.get(sample.index) or GpuInfo(index=sample.index, uuid=sample.uuid)
            if sample.healthy:
                self._last_good[sample.index] = (sample, now)
            good, at = self._last_good.get(sample.index, (None, 0.0))
            uuid = info.uuid or sample.uuid
            readings.append(GpuReading(
                info=info, sample=good, collected_at=at, stale=not sample.healthy,
                last_xid=self._last_xid.get(uuid, 0), ledger=ledgers.get(uuid),
                holders=tuple(sorted(holders.get(uuid, ()))),
                mig_holders={m.uuid: tuple(sorted(holders.get(m.uuid, ()))) for m in info.mig_instances},
            ))
        for gone in set(self._last_good) - live:  # a GPU no longer counted by NVML
            del self._last_good[gone]
        return readings
