"""GPU health from NVML events and reads: which GPUs are out, why, and until when (the device plugin's
and the DRA driver's, each for its own GPUs).

- An application Xid (config ``application_xids``) changes nothing: the fault is the program's.
- Another Xid, or an uncorrectable ECC error: out until ``xid_quiet_period_s`` pass without another.
- A fatal Xid (config ``fatal_xids``): out until the GPU is reset or back on the bus, seen as the GPU
  failing to read and then reading well again.
- A GPU NVML cannot read (lost from the bus, ...): out until it reads well again.
- A fatal Xid seen before a plugin restart (the Node's inventory says so): out again with the same
  reason and time (:meth:`HealthTracker.carry_over`), until a reset as above or the admin's clear
  (:meth:`HealthTracker.clear`, see :mod:`deviceplugin.healthrecord`).

Health means health: nothing else marks a GPU out. :func:`watch_health` is the loop both daemons run
to feed their tracker from NVML.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tessera.backoff import Backoff
from tessera.gpu import GpuEvent, GpuInfo
from tessera.log import get_logger

if TYPE_CHECKING:  # only for the hints: this module must not pull in pynvml
    import structlog

    from tessera.nvml import Nvml

ReadGpus = Callable[[], list[GpuInfo]]
"""Reads every GPU through NVML (:meth:`tessera.nvml.Nvml.read_gpus`)."""


@dataclass
class GpuCondition:
    """Why one GPU is out; absent from the tracker while healthy."""

    reason: str
    since: str  # RFC 3339
    until: float | None = None  # monotonic time it comes back by itself (non-fatal Xid)
    fatal: bool = False  # waits for a reset (read failure, then a good read)
    unreadable: bool = False  # NVML cannot read the GPU now
    reset_seen: bool = False  # a fatal GPU failed to read at least once since


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class HealthTracker:
    """Per-GPU health; every method returns True when a GPU's health changed."""

    def __init__(self, application_xids: list[int], fatal_xids: list[int], quiet_period_s: float,
                 clock: Callable[[], float] = time.monotonic, component: str = "deviceplugin") -> None:
        self.log = get_logger(component)
        self.application_xids = frozenset(application_xids)
        self.fatal_xids = frozenset(fatal_xids)
        self.quiet_period_s = quiet_period_s
        self.clock = clock
        self.out: dict[int, GpuCondition] = {}

    def healthy(self, index: int) -> bool:
        return index not in self.out

    def on_event(self, event: GpuEvent) -> bool:
        """An NVML event; True when the GPU went out (or its reason changed)."""
        index = event.gpu_index
        if index is None:
            self.log.warning("gpu_event_unattributed", kind=event.kind, xid=event.xid)
            return False
        if event.kind == "xid":
            if event.xid in self.application_xids:
                self.log.info("xid_ignored", gpu=index, xid=event.xid, reason="application Xid")
                return False
            fatal = event.xid in self.fatal_xids
            reason = f"{'fatal ' if fatal else ''}Xid {event.xid}"
        elif event.kind == "ecc_double_bit":
            fatal, reason = False, "uncorrectable ECC error"
        else:
            return False
        return self._mark_out(index, reason, fatal)

    def _mark_out(self, index: int, reason: str, fatal: bool) -> bool:
        current = self.out.get(index)
        if current is not None and current.fatal and not fatal:
            return False  # already out for good; a lesser event changes nothing
        until = None if fatal else self.clock() + self.quiet_period_s
        changed = current is None or current.reason != reason
        if current is None:
            self.out[index] = GpuCondition(reason, _now_iso(), until, fatal)
        else:
            current.reason, current.until = reason, until
            current.fatal = current.fatal or fatal
        self.log.warning("gpu_unhealthy", gpu=index, reason=reason, fatal=fatal,
                    back_in_s=None if fatal else self.quiet_period_s)
        return changed

    def on_read(self, index: int, error: str | None) -> bool:
        """The result of reading the GPU through NVML (``error`` None: it read well)."""
        current = self.out.get(index)
        if error is not None:
            if current is None:
                self.out[index] = GpuCondition(error, _now_iso(), None, True, unreadable=True, reset_seen=True)
                self.log.warning("gpu_unhealthy", gpu=index, reason=error, fatal=True, back_in_s=None)
                return True
            current.unreadable, current.reset_seen = True, True
            if not current.fatal or current.reason != error:
                current.fatal, current.until = True, None
                current.reason = error if not current.reason.startswith("fatal") else f"{current.reason}; {error}"
                return True
            return False
        if current is None:
            return False
        current.unreadable = False
        if current.fatal and current.reset_seen:
            del self.out[index]
            self.log.info("gpu_healthy", gpu=index, reason="reads well again after a reset or return to the bus")
            return True
        return False

    def carry_over(self, index: int, reason: str, since: str) -> bool:
        """A fatal Xid recorded before this process started: out until a reset or a clear."""
        if index in self.out:
            return False
        self.out[index] = GpuCondition(reason, since or _now_iso(), None, fatal=True)
        self.log.warning("gpu_unhealthy", gpu=index, reason=reason, fatal=True, back_in_s=None, since=since,
                    carried_over=True)
        return True

    def clear(self, index: int) -> bool:
        """The admin says the GPU was reset (or is fine): back in, unless NVML cannot read it now."""
        current = self.out.get(index)
        if current is None:
            return False
        if current.unreadable:
            self.log.warning("gpu_health_clear_refused", gpu=index, reason=current.reason,
                        why="NVML cannot read the GPU now")
            return False
        del self.out[index]
        self.log.info("gpu_healthy", gpu=index, reason=f"cleared by the admin (was: {current.reason})")
        return True

    def tick(self) -> bool:
        """Bring back GPUs whose quiet period has passed."""
        now, changed = self.clock(), False
        for index, cond in list(self.out.items()):
            if not cond.fatal and cond.until is not None and now >= cond.until:
                del self.out[index]
                self.log.info("gpu_healthy", gpu=index, reason=f"no further Xid for {self.quiet_period_s:g}s")
                changed = True
        return changed

    def next_deadline(self) -> float | None:
        """The earliest monotonic time a GPU comes back by itself."""
        times = [c.until for c in self.out.values() if not c.fatal and c.until is not None]
        return min(times) if times else None


def watch_health(nvml: Nvml, stop: threading.Event, apply: Callable[[list[GpuEvent], ReadGpus | None], None],
                 log: structlog.typing.FilteringBoundLogger, event_wait_s: float, read_interval_s: float,
                 first_read_s: float, after_round: Callable[[], None] | None = None) -> None:
    """Feed NVML's health news to ``apply`` until ``stop`` is set; run it on the daemon's health thread.

    Each round waits up to ``event_wait_s`` for Xid and ECC events and calls ``apply(events, read)``;
    ``read`` is ``nvml.read_gpus`` once every ``read_interval_s`` (the first ``first_read_s`` after the
    start) and None otherwise, so ``apply`` decides what it has applied before NVML is read. A failed
    round is logged as ``health_loop_failed`` and the next waits a :class:`~tessera.backoff.Backoff`.
    ``after_round`` runs after every round, failed or not.
    """
    next_read = time.monotonic() + first_read_s
    retry = Backoff()
    while not stop.is_set():
        try:
            events = nvml.events(event_wait_s)
            read = None
            if time.monotonic() >= next_read:
                next_read = time.monotonic() + read_interval_s
                read = nvml.read_gpus
            apply(events, read)
            retry.reset()
        except Exception:  # noqa: BLE001 - the loop must outlive one bad NVML answer
            log.exception("health_loop_failed")
            retry.wait(stop)
        if after_round is not None:
            after_round()
