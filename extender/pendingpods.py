"""The pods waiting to be bound, as the API server's watch last showed them: what ``bind`` reads the
pod's request from (a request body is never trusted for it), without an API call when the watch has
already delivered the pod. A pod's Tessera resources cannot change after creation, so any version of
the pod with the UID kube-scheduler names asks the same; a pod the watch has not delivered yet is read
from the API server instead."""

from __future__ import annotations

import threading

from tessera.newest import Newest

MAX_PENDING = 100_000  # a bound on memory should the watch miss deletions; the oldest go first


class PendingPods:
    """Unbound, unfinished pods by UID, fed by the informer's pod events."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._pods: Newest[str, dict] = Newest(limit)
        self._lock = threading.Lock()

    def pod_event(self, kind: str, pod: dict) -> None:
        """Keep or drop one pod after an ADDED, MODIFIED or DELETED event."""
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        waiting = (kind != "DELETED" and not (pod.get("spec") or {}).get("nodeName")
                   and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        with self._lock:
            if not waiting:
                self._pods.pop(uid, None)
                return
            self._pods.put(uid, pod)

    def get(self, uid: str, namespace: str, name: str) -> dict | None:
        """The watched pod with this UID, namespace and name, or None."""
        with self._lock:
            pod = self._pods.get(uid)
        meta = (pod or {}).get("metadata") or {}
        if pod is None or meta.get("namespace") != namespace or meta.get("name") != name:
            return None
        return pod
