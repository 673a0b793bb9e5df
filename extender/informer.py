"""List, then watch, nodes and pods into the ``ClusterCache``: from the list's resourceVersion, again
after each watch timeout, and from a fresh list when the API server says 410 Gone. ``synced`` is set
once both first lists are in."""

from __future__ import annotations

import threading

from tessera.backoff import Backoff
from tessera.log import get_logger

from extender.cache import ClusterCache
from extender.kubeapi import Gone, KubeApi, error_text
from extender.pendingpods import PendingPods

log = get_logger("extender")


class Informer:
    """Two watch threads (nodes, pods) feeding one cache, and the pods still to be bound to ``pending``."""

    def __init__(self, api: KubeApi, cache: ClusterCache, pending: PendingPods | None = None) -> None:
        self.api = api
        self.cache = cache
        self.pending = pending
        self.synced = threading.Event()
        self._listed: set[str] = set()
        self._stop = threading.Event()
        self._responses: dict[str, object] = {}
        self._threads = [threading.Thread(target=self._run, args=(kind,), name=f"watch-{kind}", daemon=True)
                         for kind in ("nodes", "pods")]

    def start(self) -> "Informer":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for resp in list(self._responses.values()):
            try:
                getattr(resp, "shutdown", resp.close)()  # unblocks a read waiting on the socket
            except Exception:  # noqa: BLE001 - already closed
                pass
        for t in self._threads:
            t.join(timeout=2)

    def _apply(self, kind: str, event_type: str, obj: dict) -> None:
        if kind == "nodes":
            self.cache.node_event(event_type, obj)
        else:
            self.cache.pod_event(event_type, obj)
            if self.pending is not None:
                self.pending.pod_event(event_type, obj)

    def _relist(self, kind: str) -> str:
        items, version = self.api.list(kind)
        seen = set()
        for obj in items:
            meta = obj.get("metadata") or {}
            seen.add(f"{meta.get('namespace', '')}/{meta.get('name', '')}" if kind == "pods" else meta.get("name"))
            self._apply(kind, "ADDED", obj)
        self._forget_missing(kind, seen)
        if kind not in self._listed:
            self._listed.add(kind)
            if len(self._listed) == 2:
                self.synced.set()
        log.info("cache_listed", kind=kind, items=len(items), resource_version=version)
        return version

    def _forget_missing(self, kind: str, seen: set) -> None:
        cache = self.cache
        with cache.lock:
            if kind == "nodes":
                gone = [n for n in cache.fleet.names() if n not in seen]
                for name in gone:
                    cache.node_event("DELETED", {"metadata": {"name": name}})
            else:
                gone = [k for k in cache.pod_keys() if k not in seen and not cache.inflight(k)]
                for key in gone:
                    ns, _, name = key.partition("/")
                    cache.pod_event("DELETED", {"metadata": {"namespace": ns, "name": name}})

    def _run(self, kind: str) -> None:
        version = None
        retry = Backoff()
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist(kind)
                    retry.reset()
                for event in self.api.watch(kind, version, lambda r: self._responses.__setitem__(kind, r)):
                    retry.reset()
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        self._apply(kind, event["type"], obj)
                    if self._stop.is_set():
                        return
            except Gone:
                log.info("watch_expired", kind=kind)
                version = None
            except Exception as exc:  # noqa: BLE001 - the API server is away: retry
                if self._stop.is_set():
                    return
                log.warning("watch_failed", kind=kind, reason=error_text(exc)[:300])
                retry.wait(self._stop)
