"""List, then watch, nodes and pods into the ``ClusterCache`` (:func:`tessera.follow.follow`): from the
list's resourceVersion, again after each watch timeout, and from a fresh list when the API server says
410 Gone. ``synced`` is set once both first lists are in. With a ``DraBook``, ResourceSlices,
ResourceClaims and ResourceClaimTemplates are followed into it the same way (not waited for: until
their lists are in, DRA pods score 0 everywhere, as on a cluster without DRA)."""

from __future__ import annotations

import threading

from kubernetes.client.rest import ApiException

from tessera.follow import follow, object_key, vanished
from tessera.kube import error_text
from tessera.log import get_logger

from extender.cache import ClusterCache
from extender.drabook import DraBook
from extender.kubeapi import DRA_KINDS, KubeApi
from extender.pendingpods import PendingPods

log = get_logger("extender")
DRA_UNSERVED_RETRY_S = 300.0


class Informer:
    """Two watch threads (nodes, pods) feeding one cache, and the pods still to be bound to ``pending``;
    three more (``DRA_KINDS``) feeding ``dra`` where given."""

    def __init__(self, api: KubeApi, cache: ClusterCache, pending: PendingPods | None = None,
                 dra: DraBook | None = None) -> None:
        self.api = api
        self.cache = cache
        self.pending = pending
        self.dra = dra
        self.synced = threading.Event()
        self._listed: set[str] = set()
        self._stop = threading.Event()
        self._responses: dict[str, object] = {}
        self._threads = [threading.Thread(target=self._run, args=(kind,), name=f"watch-{kind}", daemon=True)
                         for kind in ("nodes", "pods", *(DRA_KINDS if dra is not None else ()))]

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
        if kind in DRA_KINDS:
            self.dra.event(kind, event_type, obj)
        elif kind == "nodes":
            self.cache.node_event(event_type, obj)
        else:
            self.cache.pod_event(event_type, obj)
            if self.pending is not None:
                self.pending.pod_event(event_type, obj)

    def _relist(self, kind: str, items: list[dict]) -> None:
        for obj in items:
            self._apply(kind, "ADDED", obj)
        self._forget_missing(kind, items)
        if kind not in self._listed:
            self._listed.add(kind)
            if {"nodes", "pods"} <= self._listed:
                self.synced.set()
        log.info("cache_listed", kind=kind, items=len(items))

    def _forget_missing(self, kind: str, items: list[dict]) -> None:
        if kind in DRA_KINDS:
            self.dra.forget_missing(kind, {object_key(obj) for obj in items})
            return
        cache = self.cache
        with cache.lock:
            if kind == "nodes":
                for name in vanished(cache.fleet.names(), items):
                    cache.node_event("DELETED", {"metadata": {"name": name}})
            else:
                for key in [k for k in vanished(cache.pod_keys(), items) if not cache.inflight(k)]:
                    ns, _, name = key.partition("/")
                    cache.pod_event("DELETED", {"metadata": {"namespace": ns, "name": name}})

    def _first_dra_list(self, kind: str) -> tuple | tuple[()] | None:
        """The first list of a DRA kind once the API server serves it: () when it failed otherwise
        (``follow`` retries), None when stopped. While ``resource.k8s.io/v1`` is not served (before
        Kubernetes 1.34, or DRA off) it asks again every ``DRA_UNSERVED_RETRY_S``, said once."""
        said = False
        while not self._stop.is_set():
            try:
                return self.api.list(kind)
            except ApiException as exc:
                if exc.status != 404:
                    return ()
                if not said:
                    log.warning("dra_not_served", resource=kind, reason=error_text(exc),
                                retry_s=DRA_UNSERVED_RETRY_S)
                    said = True
            except Exception:  # noqa: BLE001 - the API server is away: follow's loop retries
                return ()
            self._stop.wait(DRA_UNSERVED_RETRY_S)
        return None

    def _run(self, kind: str) -> None:
        list_all = lambda: self.api.list(kind)  # noqa: E731
        if kind in DRA_KINDS:
            first = self._first_dra_list(kind)
            if first is None:
                return
            kept = [first] if first else []
            list_all = lambda: kept.pop() if kept else self.api.list(kind)  # noqa: E731
        follow(kind, list_all,
               lambda version: self.api.watch(kind, version, lambda r: self._responses.__setitem__(kind, r)),
               on_list=lambda items: self._relist(kind, items),
               on_event=lambda event_type, obj: self._apply(kind, event_type, obj), stop=self._stop, log=log)
