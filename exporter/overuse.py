"""Containers over their GPU memory grant: one Event per episode, and the device plugin's eviction switch.

An episode starts at the first collection where a container's processes use more memory on a GPU
than its grant, and ends at the first collection where they do not (or the container is gone).
At its start the pod gets one Kubernetes Event (reason ``GPUMemoryOverGrant``); an Event that could
not be sent is tried again at the next collection, so an episode gets at most one Event.

The eviction switch is a directory of files, one per container in an episode:
``<overuse_dir>/<namespace>_<pod>_<container>_<gpu-uuid>.json`` (names cannot hold ``_``, so the file
name is unambiguous), holding ``{"v": 1, "namespace", "pod", "pod_uid", "container", "gpu_uuid",
"used_bytes", "grant_bytes", "since"}``. It is written atomically when the episode starts and
removed when it ends. The device plugin, with ``evict_on_overuse``, evicts the pods it finds
there. At start the exporter takes the files already there as episodes in progress (no second
Event after an exporter restart) and removes those that are no longer true after its first look.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from exporter.attribution import ContainerUsage
from exporter.events import EventSink, PodEvent
from tessera.log import get_logger

__all__ = ["OVERUSE_REASON", "OveruseTracker", "switch_file_name"]

log = get_logger("exporter")
OVERUSE_REASON = "GPUMemoryOverGrant"
GIB = 1 << 30


def switch_file_name(usage: ContainerUsage) -> str:
    """The eviction-switch file of a container's episode on one GPU (or MIG instance)."""
    return f"{usage.ref.namespace}_{usage.ref.pod}_{usage.ref.container}_{usage.mig_uuid or usage.gpu_uuid}.json"


@dataclass
class _Episode:
    usage: ContainerUsage
    since: float
    event_sent: bool


class OveruseTracker:
    """Follows episodes across collections; counts the Events it could not send."""

    def __init__(self, events: EventSink, overuse_dir: str | None) -> None:
        self.events = events
        self.overuse_dir = overuse_dir or None
        self.event_errors = 0
        self.events_sent = 0
        self._episodes: dict[str, _Episode] = {}
        self._inherited = self._existing_switches()

    def _existing_switches(self) -> set[str]:
        if self.overuse_dir is None:
            return set()
        try:
            return {n for n in os.listdir(self.overuse_dir) if n.endswith(".json")}
        except OSError:
            return set()

    def update(self, usages: list[ContainerUsage], now: float | None = None) -> list[ContainerUsage]:
        """Take one collection's usages; returns those over their grant now."""
        now = time.time() if now is None else now
        over = {switch_file_name(u): u for u in usages if u.overuse_bytes > 0}
        for name in list(self._episodes):
            if name not in over:
                self._end(name)
        for name, usage in over.items():
            episode = self._episodes.get(name)
            if episode is None:
                inherited = name in self._inherited
                episode = self._episodes[name] = _Episode(usage, now, event_sent=inherited)
                if not inherited:
                    self._write_switch(name, episode)
                    log.warning("container_over_grant", namespace=usage.ref.namespace, pod=usage.ref.pod,
                                container=usage.ref.container, gpu_uuid=usage.mig_uuid or usage.gpu_uuid,
                                used_bytes=usage.used_bytes, grant_bytes=usage.grant_memory_bytes)
            episode.usage = usage
            if not episode.event_sent:
                self._send(episode)
        for stale in self._inherited - set(over):
            self._remove_switch(stale)
        self._inherited.clear()
        return list(over.values())

    def _send(self, episode: _Episode) -> None:
        u = episode.usage
        message = (f"container {u.ref.container} uses {u.used_bytes / GIB:.2f} GiB of GPU memory on "
                   f"{u.mig_uuid or u.gpu_uuid}, over its grant of {(u.grant_memory_bytes or 0) / GIB:.2f} GiB")
        try:
            self.events.emit(PodEvent(u.ref.namespace, u.ref.pod, u.pod_uid, OVERUSE_REASON, message))
        except Exception as err:  # noqa: BLE001 - any API failure: count it, try again next collection
            self.event_errors += 1
            log.warning("pod_event_failed", reason=OVERUSE_REASON, namespace=u.ref.namespace, pod=u.ref.pod,
                        error=str(err)[:300])
            return
        episode.event_sent = True
        self.events_sent += 1
        log.info("pod_event_sent", reason=OVERUSE_REASON, namespace=u.ref.namespace, pod=u.ref.pod,
                 container=u.ref.container)

    def _end(self, name: str) -> None:
        episode = self._episodes.pop(name)
        u = episode.usage
        log.info("container_within_grant", namespace=u.ref.namespace, pod=u.ref.pod, container=u.ref.container,
                 gpu_uuid=u.mig_uuid or u.gpu_uuid, over_for_s=round(time.time() - episode.since, 1))
        self._remove_switch(name)

    def _write_switch(self, name: str, episode: _Episode) -> None:
        if self.overuse_dir is None:
            return
        u = episode.usage
        doc = {"v": 1, "namespace": u.ref.namespace, "pod": u.ref.pod, "pod_uid": u.pod_uid,
               "container": u.ref.container, "gpu_uuid": u.mig_uuid or u.gpu_uuid, "used_bytes": u.used_bytes,
               "grant_bytes": u.grant_memory_bytes, "since": int(episode.since)}
        path = os.path.join(self.overuse_dir, name)
        tmp = os.path.join(self.overuse_dir, f".{name}.tmp")
        try:
            os.makedirs(self.overuse_dir, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, sort_keys=True)
            os.replace(tmp, path)
        except OSError as err:
            log.warning("overuse_switch_unwritable", path=path, reason=err.strerror)

    def _remove_switch(self, name: str) -> None:
        if self.overuse_dir is None:
            return
        try:
            os.unlink(os.path.join(self.overuse_dir, name))
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("overuse_switch_unremovable", name=name, reason=err.strerror)
