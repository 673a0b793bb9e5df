"""A task that runs every few seconds on a daemon thread of its own until stopped."""

from __future__ import annotations

import threading

from tessera.log import get_logger

log = get_logger("tessera")


class PeriodicWorker:
    """Calls ``tick()`` every ``interval_s`` from ``start()`` until ``stop()``; an exception in one tick
    is logged as ``failure_event`` on ``logger`` and the next tick runs as planned."""

    def __init__(self, name: str, interval_s: float, failure_event: str = "periodic_tick_failed",
                 logger=None) -> None:
        self.interval_s = interval_s
        self._failure_event = failure_event
        self._log = logger or log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep going: the next tick may succeed
                self._log.exception(self._failure_event, worker=self._thread.name)
