"""Evicting a pod whose container uses more GPU memory than its grant (``evict_on_overuse``).

MPS enforces memory only cooperatively per client (ARCHITECTURE.md, "What MPS enforces"), so the
exporter measures each process against its grant and marks a container over it with a file in the
eviction-switch directory (``<overuse_dir>/<namespace>_<pod>_<container>_<gpu>.json``, see
``exporter/overuse.py``). With ``evict_on_overuse`` on, this worker evicts such a pod through the
Eviction API, once per pod, and logs why. Off (the default), nothing is evicted: the exporter's
metric and Event still tell the operator.
"""

from __future__ import annotations

import json
import os
from tessera.backoff import Backoff
from tessera.log import get_logger
from tessera.periodic import PeriodicWorker

log = get_logger("deviceplugin.eviction")


class OveruseEvictor(PeriodicWorker):
    """Polls the eviction-switch directory; evicts each pod named there once."""

    def __init__(self, api, overuse_dir: str, interval_s: float = 1.0) -> None:
        super().__init__("dp-eviction", interval_s, "overuse_scan_failed", log)
        self.api = api
        self.overuse_dir = overuse_dir
        self.evicted: set[str] = set()  # pod UIDs (or namespace/name) already evicted
        self._retry = Backoff()  # an eviction failed: later scans wait for it before calling the API again

    def tick(self) -> int:
        return self.scan()

    def scan(self) -> int:
        """Evict every pod marked over its grant and not evicted yet; returns how many were evicted."""
        try:
            names = sorted(n for n in os.listdir(self.overuse_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return 0
        evicted = 0
        for name in names:
            try:
                with open(os.path.join(self.overuse_dir, name), encoding="utf-8") as fh:
                    mark = json.load(fh)
                namespace, pod, uid = mark["namespace"], mark["pod"], mark.get("pod_uid", "")
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("overuse_mark_unreadable", file=name, error=str(err))
                continue
            key = uid or f"{namespace}/{pod}"
            if key in self.evicted or not self._retry.due():
                continue
            try:
                self.api.evict_pod(namespace, pod, uid)
            except Exception as err:  # noqa: BLE001 - retried at a scan after the backoff
                self._retry.failed()
                log.warning("overuse_eviction_failed", pod=pod, namespace=namespace, error=str(err))
                continue
            self._retry.reset()
            self.evicted.add(key)
            evicted += 1
            log.warning("pod_evicted_for_gpu_memory_overuse", pod=pod, namespace=namespace,
                        container=mark.get("container"), gpu=mark.get("gpu_uuid"),
                        used_bytes=mark.get("used_bytes"), grant_bytes=mark.get("grant_bytes"))
        return evicted
