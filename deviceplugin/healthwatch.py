"""The health loop: NVML Xid and ECC events as they come, quiet periods, and periodic re-reads.

Events reach the resource manager within one event wait (``event_wait_s``), so ListAndWatch
reports a GPU and all its shares unhealthy well within a second. Reads every ``read_interval_s``
find GPUs lost from the bus and GPUs back after a reset. All NVML calls happen on this one thread.
"""

from __future__ import annotations

import threading
import time

from deviceplugin import metrics
from deviceplugin.rm import NodeDevices
from tessera.backoff import Backoff
from tessera.log import get_logger
from tessera.nvml import Nvml

log = get_logger("deviceplugin")


class HealthWatch:
    """Runs the health loop on a daemon thread until :meth:`stop`."""

    def __init__(self, nvml: Nvml, rm: NodeDevices, event_wait_s: float = 0.1, read_interval_s: float = 1.0) -> None:
        self.nvml, self.rm = nvml, rm
        self.event_wait_s, self.read_interval_s = event_wait_s, read_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dp-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _snapshot(self) -> dict[int, bool]:
        return self.rm.gpu_health()

    def _run(self) -> None:
        next_read = time.monotonic() + self.read_interval_s
        retry = Backoff()
        while not self._stop.is_set():
            before = self._snapshot()
            try:
                events = self.nvml.events(self.event_wait_s)
                if events:
                    self.rm.apply_events(events)
                self.rm.tick()
                if time.monotonic() >= next_read:
                    next_read = time.monotonic() + self.read_interval_s
                    self.rm.apply_reads(self.nvml.read_gpus())
                retry.reset()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad NVML answer
                log.exception("health_loop_failed")
                retry.wait(self._stop)
            after = self._snapshot()
            for index, healthy in after.items():
                if before.get(index) != healthy:
                    metrics.HEALTH_TRANSITIONS.labels(str(index), str(healthy).lower()).inc()
