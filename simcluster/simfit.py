"""kube-scheduler's own NodeResourcesFit, for extended resources only, as the simulated scheduler needs it.

With ``managedResources`` marked ``ignoredByScheduler: false`` (deploy/base/scheduler-config.yaml),
kube-scheduler itself drops a node whose ``status.allocatable`` of an extended resource, less what the
pods already on that node request, does not cover the pod's request ("Insufficient nvidia.com/gpu"),
before it calls the extender. That matters in the window after a node appears and before its device
plugin registered: the node advertises nothing yet, and a pod bound there would be refused by the
kubelet (OutOfnvidia.com/gpu). CPU and memory are left to the extender, which checks them itself.
"""

from __future__ import annotations

import threading

from tessera.quantity import QuantityError, parse_quantity

TERMINAL_PHASES = ("Succeeded", "Failed")


def is_extended(name: str) -> bool:
    """A resource name with a domain outside ``kubernetes.io`` (``nvidia.com/gpu``; not ``cpu``)."""
    domain, slash, _ = name.partition("/")
    return bool(slash) and not domain.endswith("kubernetes.io")


def _extended_counts(quantities: dict) -> dict[str, int]:
    """The extended resources of a name -> quantity map, as counts (unreadable values left out)."""
    out: dict[str, int] = {}
    for name, value in quantities.items():
        if is_extended(name):
            try:
                out[name] = int(parse_quantity(value))
            except (QuantityError, ValueError):
                continue
    return out


def _amounts(resources: dict | None) -> dict[str, int]:
    return _extended_counts((resources or {}).get("requests") or (resources or {}).get("limits") or {})


def extended_requests(pod: dict) -> dict[str, int]:
    """The pod's effective request of each extended resource: the sum over its containers, or the
    largest single init container where that is more (kube-scheduler's rule)."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        for name, value in _amounts(container.get("resources")).items():
            total[name] = total.get(name, 0) + value
    for container in spec.get("initContainers") or ():
        for name, value in _amounts(container.get("resources")).items():
            total[name] = max(total.get(name, 0), value)
    return total


def extended_allocatable(node: dict) -> dict[str, int]:
    """A Node's ``status.allocatable`` of extended resources."""
    return _extended_counts((node.get("status") or {}).get("allocatable") or {})


class ExtendedFit:
    """Free extended resources per node (allocatable less what its pods request), fed by node and pod
    watch events and by the scheduler's own assumptions (a pod chosen for a node counts there before
    its bind lands)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._allocatable: dict[str, dict[str, int]] = {}       # node -> resource -> allocatable
        self._used: dict[str, dict[str, int]] = {}              # node -> resource -> requested by its pods
        self._free: dict[str, dict[str, int]] = {}              # resource -> node -> free (the hot lookup)
        self._pods: dict[str, tuple[str, dict[str, int]]] = {}  # pod UID -> (node, requests)
        self._assumed: set[str] = set()                          # UIDs counted by assume, not yet seen bound

    def node_event(self, kind: str, node: dict) -> None:
        name = (node.get("metadata") or {}).get("name")
        with self._lock:
            old = self._allocatable.pop(name, {})
            new = {} if kind == "DELETED" else extended_allocatable(node)
            if new:
                self._allocatable[name] = new
            for res in set(old) | set(new):
                self._refresh(name, res)

    def replace_nodes(self, nodes: list[dict]) -> None:
        """Start over from a full list of nodes."""
        with self._lock:
            self._allocatable = {}
            for node in nodes:
                alloc = extended_allocatable(node)
                if alloc:
                    self._allocatable[node["metadata"]["name"]] = alloc
            self._rebuild_free()

    def replace_pods(self, pods: list[dict]) -> None:
        """Start over from a full list of pods (assumptions not yet seen bound are kept)."""
        with self._lock:
            assumed = {uid: self._pods[uid] for uid in self._assumed if uid in self._pods}
            self._pods, self._used = {}, {}
            for pod in pods:
                node = (pod.get("spec") or {}).get("nodeName")
                if node and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
                    self._pods[pod["metadata"].get("uid", "")] = (node, extended_requests(pod))
            for uid, entry in assumed.items():
                self._pods.setdefault(uid, entry)
            self._assumed &= set(assumed)
            for node, requests in self._pods.values():
                used = self._used.setdefault(node, {})
                for res, value in requests.items():
                    used[res] = used.get(res, 0) + value
            self._rebuild_free()

    def _rebuild_free(self) -> None:
        self._free = {}
        for node in set(self._allocatable) | set(self._used):
            for res in set(self._allocatable.get(node, {})) | set(self._used.get(node, {})):
                self._refresh(node, res)

    def pod_event(self, kind: str, pod: dict) -> None:
        """Count a pod on its node while it is bound and not finished."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        node = (pod.get("spec") or {}).get("nodeName")
        live = kind != "DELETED" and node and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
        with self._lock:
            if node or kind == "DELETED":
                self._assumed.discard(uid)  # the API server's word replaces the assumption
            if not live:
                self._remove(uid)
            elif uid not in self._pods:
                self._add(uid, node, extended_requests(pod))

    def assume(self, pod: dict, node: str) -> None:
        """Count ``pod`` on ``node`` now (kube-scheduler's assume)."""
        with self._lock:
            uid = (pod.get("metadata") or {}).get("uid", "")
            if uid not in self._pods:
                self._add(uid, node, extended_requests(pod))
                self._assumed.add(uid)

    def forget(self, pod: dict) -> None:
        """Undo ``assume`` after a failed bind."""
        with self._lock:
            uid = (pod.get("metadata") or {}).get("uid", "")
            self._assumed.discard(uid)
            self._remove(uid)

    def _refresh(self, node: str, res: str) -> None:
        free = self._allocatable.get(node, {}).get(res, 0) - self._used.get(node, {}).get(res, 0)
        self._free.setdefault(res, {})[node] = free

    def _add(self, uid: str, node: str, requests: dict[str, int]) -> None:
        if not requests:
            return
        self._pods[uid] = (node, requests)
        used = self._used.setdefault(node, {})
        for res, value in requests.items():
            used[res] = used.get(res, 0) + value
            self._refresh(node, res)

    def _remove(self, uid: str) -> None:
        entry = self._pods.pop(uid, None)
        if entry is None:
            return
        node, requests = entry
        used = self._used.get(node, {})
        for res, value in requests.items():
            used[res] = used.get(res, 0) - value
            self._refresh(node, res)

    def filter(self, requests: dict[str, int], nodes: list[str]) -> tuple[list[str], dict[str, int]]:
        """The nodes of ``nodes`` where ``requests`` fit, and for the others how many lacked each
        resource (for the FailedScheduling message)."""
        fits = nodes
        short: dict[str, int] = {}
        with self._lock:
            for res, want in requests.items():
                free = self._free.get(res, {})
                kept = [node for node in fits if free.get(node, 0) >= want]
                if len(kept) != len(fits):
                    short[res] = len(fits) - len(kept)
                    fits = kept
        return fits, short


def insufficient_message(short: dict[str, int], total: int) -> str:
    """``0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`` as kube-scheduler writes it."""
    parts = ", ".join(f"{n} Insufficient {name}" for name, n in sorted(short.items()))
    return f"0/{total} nodes are available: {parts}."


__all__ = ["ExtendedFit", "extended_allocatable", "extended_requests", "insufficient_message", "is_extended"]
