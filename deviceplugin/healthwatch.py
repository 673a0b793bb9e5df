"""The device plugin's health loop (:func:`tessera.gpuhealth.watch_health`): NVML Xid and ECC events as they
come, quiet periods, and periodic re-reads.

Events reach the resource manager within one event wait (``event_wait_s``), so ListAndWatch
reports a GPU and all its shares unhealthy well within a second. Reads every ``read_interval_s``
find GPUs lost from the bus and GPUs back after a reset. All NVML calls happen on this one thread.
"""

from __future__ import annotations

import threading

from deviceplugin import metrics
from deviceplugin.rm import NodeDevices
from tessera.gpu import GpuEvent
from tessera.gpuhealth import ReadGpus, watch_health
from tessera.log import get_logger
from tessera.nvml import Nvml

log = get_logger("deviceplugin")


class HealthWatch:
    """Runs the health loop on a daemon thread until :meth:`stop`."""

    def __init__(self, nvml: Nvml, rm: NodeDevices, event_wait_s: float = 0.1, read_interval_s: float = 1.0) -> None:
        self.nvml, self.rm = nvml, rm
        self._seen: dict[int, bool] = {}  # GPU index -> healthy, as the last round left it
        self.event_wait_s, self.read_interval_s = event_wait_s, read_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dp-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        self._seen = self.rm.gpu_health()
        watch_health(self.nvml, self._stop, self._apply, log, self.event_wait_s, self.read_interval_s,
                     first_read_s=self.read_interval_s, after_round=self._count_transitions)

    def _apply(self, events: list[GpuEvent], read: ReadGpus | None) -> None:
        if events:
            self.rm.apply_events(events)
        self.rm.tick()
        if read is not None:
            self.rm.apply_reads(read())

    def _count_transitions(self) -> None:
        after = self.rm.gpu_health()
        for index, healthy in after.items():
            if self._seen.get(index) != healthy:
                metrics.HEALTH_TRANSITIONS.labels(str(index), str(healthy).lower()).inc()
        self._seen = after
