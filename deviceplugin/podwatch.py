"""The pods bound to this node, kept in memory from an API server watch (field selector spec.nodeName).

For each pod not yet admitted it keeps each container's Tessera requests, read by the one request parser
(``tessera.podrequest``, the webhook's and the extender's rules; a pod they refuse is logged and kept
with none, so no admission matches it by size) and, where the pod carries
an assignment the extender signed for this very pod and node, the assigned IDs. A forged or copied
assignment (bad signature, another pod's UID, another node) is logged and ignored: the pod is then
treated like one that came without the extender. GetPreferredAllocation finds the pod being
admitted by the size it asks (:meth:`match`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from deviceplugin.apiclient import NodeApi
from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import WRITTEN_BY_PLUGIN, AssignmentError, ResourceAssignment, read_assignment, verify_assignment
from tessera.follow import follow
from tessera.log import get_logger
from tessera.podrequest import RequestError, pod_request, requested_devices

log = get_logger("deviceplugin")


def device_requests(pod: dict) -> dict[str, dict[str, int]]:
    """Per container, how many device IDs of each Tessera resource it requests of the kubelet, read by the
    one request parser (``tessera.podrequest``); containers that use no GPU are left out. RequestError
    for a pod the webhook and the extender would refuse."""
    return {c.name: devices for c in pod_request(pod).containers if (devices := requested_devices(c.ask))}


@dataclass
class PendingContainer:
    """One container of a pod bound here and not yet fully allocated."""

    pod_uid: str
    namespace: str
    pod_name: str
    container: str
    requests: dict[str, int]
    assigned: dict[str, ResourceAssignment] = field(default_factory=dict)
    seen: float = 0.0


@dataclass
class PodEntry:
    uid: str
    namespace: str
    name: str
    phase: str
    containers: list[PendingContainer]
    annotations: dict[str, str]
    trusted_assignment: bool


class PodWatch:
    """This node's pods; thread-safe. :meth:`start` runs the watch on a daemon thread."""

    def __init__(self, api: NodeApi, node: str, public_key) -> None:
        self.api, self.node, self.public_key = api, node, public_key
        self.pods: dict[str, PodEntry] = {}
        self.allocated: set[tuple[str, str, str]] = set()  # (pod uid, container, resource)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._resp = None
        self._rejected: dict[str, str] = {}
        self._refused: dict[str, str] = {}  # pod uid -> why its request was refused, said once
        self._thread = threading.Thread(target=self._run, name="dp-podwatch", daemon=True)
        self.synced = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self.synced.wait(timeout=5)

    def stop(self) -> None:
        self._stop.set()
        # Closing a watch response from another thread blocks on its reader; the watch threads are
        # daemon threads, so a read in progress ends with the process.
        self._thread.join(timeout=0.2)  # a daemon thread: a watch blocked in a read ends with the process

    # ---- queries (admission path: memory only) ------------------------------------------------
    def match(self, resource: str, size: int, wait_s: float = 0.0) -> PendingContainer | None:
        """The pending container that asks ``size`` of ``resource`` (oldest first)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                found = self._match(resource, size)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._cond.wait(left)

    def _match(self, resource: str, size: int) -> PendingContainer | None:
        best = None
        for pod in self.pods.values():
            if pod.phase not in ("Pending", ""):
                continue
            for c in pod.containers:
                if c.requests.get(resource) == size and (c.pod_uid, c.container, resource) not in self.allocated:
                    if best is None or c.seen < best.seen:
                        best = c
        return best

    def mark_allocated(self, pod_uid: str, container: str, resource: str) -> None:
        with self._cond:
            self.allocated.add((pod_uid, container, resource))

    def uid_of(self, namespace: str, name: str) -> str | None:
        with self._cond:
            for pod in self.pods.values():
                if pod.namespace == namespace and pod.name == name:
                    return pod.uid
        return None

    def entry(self, uid: str) -> PodEntry | None:
        with self._cond:
            return self.pods.get(uid)

    # ---- the watch ----------------------------------------------------------------------------
    def _run(self) -> None:
        follow("pods", self.api.list_pods, lambda version: self.api.watch("pods", version, self._set_resp),
               on_list=self._replace_all, on_event=self._on_event, stop=self._stop, log=log)

    def _replace_all(self, items: list[dict]) -> None:
        with self._cond:
            self.pods = {}
            for pod in items:
                self._apply("ADDED", pod)
            self._cond.notify_all()
        self.synced.set()

    def _on_event(self, kind: str, pod: dict) -> None:
        with self._cond:
            self._apply(kind, pod)
            self._cond.notify_all()

    def _set_resp(self, resp) -> None:
        self._resp = resp

    def _apply(self, kind: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.pods.pop(uid, None)
            self._refused.pop(uid, None)
            self.allocated = {a for a in self.allocated if a[0] != uid}
            return
        annotations = meta.get("annotations") or {}
        assigned, trusted = self._assignment(uid, meta, annotations)
        previous = self.pods.get(uid)
        seen = {c.container: c.seen for c in previous.containers} if previous else {}
        now = time.monotonic()
        containers = []
        for cname, requests in self._device_requests(uid, meta, pod).items():
            containers.append(PendingContainer(uid, meta.get("namespace", "default"), meta.get("name", ""),
                                               cname, requests, assigned.get(cname, {}), seen.get(cname, now)))
        self.pods[uid] = PodEntry(uid, meta.get("namespace", "default"), meta.get("name", ""),
                                  (pod.get("status") or {}).get("phase", ""), containers, annotations, trusted)

    def _device_requests(self, uid: str, meta: dict, pod: dict) -> dict[str, dict[str, int]]:
        """The pod's device requests; a pod the request rules refuse is watched with none (so no admission
        matches it by size), said once per reason."""
        try:
            return device_requests(pod)
        except RequestError as err:
            if self._refused.get(uid) != str(err):
                self._refused[uid] = str(err)
                log.warning("pod_request_refused", pod=f"{meta.get('namespace', 'default')}/{meta.get('name')}",
                            pod_uid=uid, reason=str(err))
            return {}

    def _assignment(self, uid: str, meta: dict, annotations: dict) -> tuple[dict, bool]:
        value = annotations.get(ANNOTATION_ASSIGNMENT)
        if value is None:
            return {}, False
        try:
            doc, _ = read_assignment(value)
            if doc.written_by == WRITTEN_BY_PLUGIN and doc.pod_uid == uid and doc.node == self.node:
                return {}, False  # our own record: no instruction
            if self.public_key is None:
                raise AssignmentError("no extender public key on this node")
            doc = verify_assignment(value, uid, self.public_key, node=self.node)
        except AssignmentError as err:
            if self._rejected.get(uid) != str(err):
                self._rejected[uid] = str(err)
                log.warning("assignment_rejected", pod=f"{meta.get('namespace', 'default')}/{meta.get('name')}",
                            pod_uid=uid, reason=str(err))
            return {}, False
        return doc.containers, True
