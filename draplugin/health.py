"""The health of the driver's GPUs, as device taints in its ResourceSlice.

The same rules as the device plugin's (:class:`tessera.gpuhealth.HealthTracker`: application Xids
ignored, other Xids and uncorrectable ECC errors out for a quiet period, fatal Xids and unreadable GPUs
out until a reset), on a thread of its own reading NVML events and, every few seconds, every GPU. A GPU
that is out puts a taint on each of its devices (``gpu.tessera.io/unhealthy=<reason>``, effect
``unhealthy_taint_effect``): kube-scheduler allocates no new claim on a tainted device, and with
``NoExecute`` kube-controller-manager's device-taint eviction controller evicts the pods using it. The
slice is written again as soon as a GPU goes out or comes back.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from draplugin import metrics
from tessera.gpu import GpuEvent
from tessera.gpuhealth import HealthTracker, ReadGpus, watch_health
from tessera.log import get_logger
from tessera.nvml import Nvml

log = get_logger("draplugin")
TAINT_SUFFIX = "unhealthy"


def label_value(reason: str) -> str:
    """``reason`` as a label value (a taint's value): ``fatal Xid 79`` -> ``fatal-xid-79``."""
    text = re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")[:63].rstrip("-")
    return text or "unknown"


class DeviceHealth:
    """Watches the GPUs at ``indices``; :meth:`taints` says a GPU's, ``changed`` is called when they change."""

    def __init__(self, nvml: Nvml, indices: list[int], tracker: HealthTracker, driver: str, effect: str,
                 changed: Callable[[], None], event_wait_s: float = 0.5, read_interval_s: float = 5.0) -> None:
        self.nvml, self.indices, self.tracker = nvml, set(indices), tracker
        self.key, self.effect, self.changed = f"{driver}/{TAINT_SUFFIX}", effect, changed
        self.event_wait_s, self.read_interval_s = event_wait_s, read_interval_s
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dra-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def reason(self, index: int) -> str | None:
        """Why GPU ``index`` is out, None while healthy."""
        with self.lock:
            condition = self.tracker.out.get(index)
        return None if condition is None else condition.reason

    def taints(self, index: int) -> list[dict]:
        """The device taints of GPU ``index`` now (none while healthy)."""
        with self.lock:
            condition = self.tracker.out.get(index)
        if condition is None:
            return []
        return [{"key": self.key, "value": label_value(condition.reason), "effect": self.effect,
                 "timeAdded": condition.since}]

    def check(self, events, reads) -> bool:
        """Apply NVML ``events`` and ``reads`` (GpuInfo, or None) to the tracker; whether any GPU of the
        driver went out or came back (or changed its reason)."""
        with self.lock:
            before = {i: c.reason for i, c in self.tracker.out.items()}
            for event in events:
                if event.gpu_index in self.indices:
                    self.tracker.on_event(event)
            self.tracker.tick()
            for info in reads or ():
                if info.index in self.indices:
                    self.tracker.on_read(info.index, info.error)
            after = {i: c.reason for i, c in self.tracker.out.items()}
        metrics.UNHEALTHY.set(len(after))
        return before != after

    def _run(self) -> None:
        watch_health(self.nvml, self._stop, self._apply, log, self.event_wait_s, self.read_interval_s,
                     first_read_s=0.0)

    def _apply(self, events: list[GpuEvent], read: ReadGpus | None) -> None:
        if self.check(events, read() if read is not None else None):
            log.info("device_health_changed", unhealthy={i: c.reason for i, c in self.tracker.out.items()})
            self.changed()
