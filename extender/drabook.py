"""What the extender follows of DRA: Tessera's ResourceSlices, the ResourceClaims and their templates.

kube-scheduler's DRA allocator picks the devices of a pod's claims, and it has no scorer of its own for
them (Kubernetes 1.37: the DynamicResources plugin scores only a prioritized list's order); the node it
places the pod on is left to the default score plugins, which see none of the GPU. The extender scores
those nodes for the pods routed to tessera-scheduler (``extender.drascoring``), and for that it keeps:

- per node, the devices of ``gpu.tessera.io`` ResourceSlices whose pool is that node (the newest pool
  generation only: slices of an older one are being replaced);
- per node, what allocated claims hold there: each allocation result of driver ``gpu.tessera.io`` and
  pool the node, with its ``consumedCapacity``;
- the requests of claims and claim templates, by namespace and name, so a pod's claims can be read as
  a Tessera request (``drascoring.dra_pod_request``) and the webhook can tell a pod asking for Tessera's
  DeviceClasses (``asks_tessera``).

All of it is read as untrusted input (a tenant writes claims and templates): malformed parts are
skipped, never raised. ``node_version(name)`` changes whenever anything of a node does, so scorers
rebuild only nodes that changed. Every method takes ``lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tessera.dradevices import DRIVER_NAME

CLASS_SUFFIX = "." + DRIVER_NAME    # mps.gpu.tessera.io, timeslice.gpu.tessera.io, mig.gpu.tessera.io, ...
MAX_REQUESTS = 32                   # a claim's requests read (the API allows 32)


def tessera_class(name: object) -> bool:
    """Whether a DeviceClass name is one of Tessera's (``gpu.tessera.io`` or ``<mode>.gpu.tessera.io``)."""
    return isinstance(name, str) and (name == DRIVER_NAME or name.endswith(CLASS_SUFFIX))


@dataclass(frozen=True)
class DeviceRequest:
    """One request of a claim (``spec.devices.requests[].exactly``), as far as scoring reads it."""

    name: str
    device_class: str
    count: int
    capacity: dict[str, str]   # capacity.requests: name -> quantity as written


@dataclass(frozen=True)
class Holding:
    """One allocated device on a node: the claim holding it, which of its results, the device, what it
    consumed (one claim may hold a shared device more than once)."""

    claim_uid: str
    result: int
    device: str
    consumed: dict[str, str]


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _holdings(uid: str, claim: dict) -> tuple[tuple[str, Holding], ...]:
    """(node, holding) for each allocation result of the claim on one of Tessera's devices; results
    with ``adminAccess`` (a monitoring claim's view of a device someone else holds) hold nothing."""
    results = _mapping(_mapping(_mapping(claim.get("status")).get("allocation")).get("devices")).get("results")
    held = []
    for i, result in enumerate(_list(results)):
        result = _mapping(result)
        if result.get("driver") != DRIVER_NAME or not isinstance(result.get("pool"), str) or result.get("adminAccess"):
            continue
        consumed = {str(k): str(v) for k, v in _mapping(result.get("consumedCapacity")).items()
                    if isinstance(v, (str, int))}
        held.append((result["pool"], Holding(uid, i, str(result.get("device", "")), consumed)))
    return tuple(held)


def claim_requests(spec: object) -> tuple[DeviceRequest, ...]:
    """The requests of a ResourceClaim spec (a template's ``spec.spec``); a request that is not an
    ``exactly`` of one named class is kept with class "" (it is not Tessera's to score)."""
    out = []
    for req in _list(_mapping(_mapping(spec).get("devices")).get("requests"))[:MAX_REQUESTS]:
        req = _mapping(req)
        exactly = _mapping(req.get("exactly"))
        count = exactly.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            count = 0
        if exactly.get("allocationMode", "ExactCount") != "ExactCount":
            count = 0   # All: as many as the node has, not a shape
        capacity = {str(k): str(v) for k, v in _mapping(_mapping(exactly.get("capacity")).get("requests")).items()
                    if isinstance(v, (str, int))}
        device_class = exactly.get("deviceClassName")
        out.append(DeviceRequest(str(req.get("name", "")), device_class if isinstance(device_class, str) else "",
                                 count, capacity))
    return tuple(out)


class DraBook:
    """Tessera's DRA devices and allocations per node, and claim and template requests by name.

    Only what scoring can use is kept: slices of driver ``gpu.tessera.io``, and claims that ask one of
    Tessera's DeviceClasses or hold one of its devices (a tenant's claims of other drivers cost nothing
    here). Per node, the slices and the holdings are indexed, so a node's state is read without a scan
    of the cluster's objects."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._slices: dict[str, tuple[str, int, int, tuple[dict, ...]]] = {}  # name -> (node, generation, count, devices)
        self._slices_of: dict[str, set[str]] = {}                              # node -> slice names
        self._claims: dict[str, tuple[DeviceRequest, ...]] = {}                # ns/name -> requests
        self._held: dict[str, dict[str, tuple[Holding, ...]]] = {}             # node -> ns/name -> holdings
        self._held_at: dict[str, tuple[tuple[str, Holding], ...]] = {}         # ns/name -> (node, holding)
        self._templates: dict[str, tuple[DeviceRequest, ...]] = {}             # ns/name -> requests
        self._node_versions: dict[str, int] = {}
        self._clock = 0

    # -- events ----------------------------------------------------------------------------------

    def event(self, kind: str, event_type: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED object of ``kind`` (one of ``extender.kubeapi.DRA_KINDS``)."""
        {"resourceslices": self.slice_event, "resourceclaims": self.claim_event,
         "resourceclaimtemplates": self.template_event}[kind](event_type, obj)

    def _touch(self, nodes: Iterable[str]) -> None:
        self._clock += 1
        for node in nodes:
            if not node:
                continue
            if self._slices_of.get(node) or self._held.get(node):
                self._node_versions[node] = self._clock
            else:  # nothing of Tessera's left on it: forgotten, so deleted nodes do not pile up
                self._node_versions.pop(node, None)
                self._slices_of.pop(node, None)
                self._held.pop(node, None)

    def slice_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceSlice (other drivers' slices are ignored)."""
        name = str(_mapping(obj.get("metadata")).get("name", ""))
        spec = _mapping(obj.get("spec"))
        with self.lock:
            old = self._slices.pop(name, None)
            touched = []
            if old is not None:
                self._slices_of.get(old[0], set()).discard(name)
                touched.append(old[0])
            node = spec.get("nodeName")
            if kind != "DELETED" and spec.get("driver") == DRIVER_NAME and isinstance(node, str) and node:
                pool = _mapping(spec.get("pool"))
                generation, count = pool.get("generation", 0), pool.get("resourceSliceCount", 1)
                devices = tuple(d for d in _list(spec.get("devices")) if isinstance(d, dict))
                self._slices[name] = (node, generation if isinstance(generation, int) else 0,
                                      count if isinstance(count, int) else 1, devices)
                self._slices_of.setdefault(node, set()).add(name)
                touched.append(node)
            self._touch(touched)

    def claim_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceClaim. A MODIFIED one that changes neither its
        requests nor its allocation changes nothing (a tenant relabelling a claim costs no rebuild)."""
        meta = _mapping(obj.get("metadata"))
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        requests, held = (), ()
        if kind != "DELETED":
            requests = claim_requests(obj.get("spec"))
            held = _holdings(str(meta.get("uid", key)), obj)
        with self.lock:
            if requests and any(tessera_class(r.device_class) for r in requests):
                self._claims[key] = requests
            else:
                self._claims.pop(key, None)
            old = self._held_at.get(key, ())
            if old == held:
                return
            for node, _ in old:
                self._held.get(node, {}).pop(key, None)
            if held:
                self._held_at[key] = held
                for node in {n for n, _ in held}:
                    self._held.setdefault(node, {})[key] = tuple(h for n, h in held if n == node)
            else:
                self._held_at.pop(key, None)
            self._touch({n for n, _ in old} | {n for n, _ in held})

    def template_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceClaimTemplate (kept only when it asks one of
        Tessera's DeviceClasses)."""
        meta = _mapping(obj.get("metadata"))
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        requests = claim_requests(_mapping(obj.get("spec")).get("spec")) if kind != "DELETED" else ()
        with self.lock:
            if any(tessera_class(r.device_class) for r in requests):
                self._templates[key] = requests
            else:
                self._templates.pop(key, None)

    def forget_missing(self, kind: str, present: set[str]) -> None:
        """After a relist: drop the objects of ``kind`` (resourceslices, resourceclaims,
        resourceclaimtemplates) whose key (name, or namespace/name) is not in ``present``."""
        with self.lock:
            if kind == "resourceslices":
                held = set(self._slices)
            elif kind == "resourceclaims":
                held = set(self._claims) | set(self._held_at)
            else:
                held = set(self._templates)
        for key in held - present:
            ns, _, name = key.rpartition("/")
            self.event(kind, "DELETED", {"metadata": {"namespace": ns, "name": name}})

    # -- reads -----------------------------------------------------------------------------------

    def node_version(self, node: str) -> int:
        """Changes whenever the node's devices or holdings do (0: nothing of Tessera's on it)."""
        with self.lock:
            return self._node_versions.get(node, 0)

    def devices(self, node: str) -> list[dict]:
        """The node's ``gpu.tessera.io`` devices, from its slices of the newest pool generation, each
        device name once; none while that generation has fewer slices than it says (being rewritten:
        kube-scheduler's allocator does not use an incomplete pool either)."""
        with self.lock:
            slices = [self._slices[name] for name in self._slices_of.get(node, ())]
        if not slices:
            return []
        newest = max(gen for _, gen, _, _ in slices)
        current = [(count, devs) for _, gen, count, devs in slices if gen == newest]
        if len(current) < max(count for count, _ in current):
            return []
        seen, out = set(), []
        for _, devs in current:
            for d in devs:
                if d.get("name") not in seen:
                    seen.add(d.get("name"))
                    out.append(d)
        return out

    def holdings(self, node: str) -> list[Holding]:
        """What allocated claims hold on the node."""
        with self.lock:
            return [h for held in self._held.get(node, {}).values() for h in held]

    def claim(self, namespace: str, name: str) -> tuple[DeviceRequest, ...] | None:
        """A claim's requests, where it asks one of Tessera's classes (None: not seen, or not Tessera's)."""
        with self.lock:
            return self._claims.get(f"{namespace}/{name}")

    def template(self, namespace: str, name: str) -> tuple[DeviceRequest, ...] | None:
        """A claim template's requests, where it asks one of Tessera's classes (None otherwise)."""
        with self.lock:
            return self._templates.get(f"{namespace}/{name}")

    def pod_claims(self, pod: dict, namespace: str,
                   most: int | None = None) -> Iterator[tuple[object, tuple[DeviceRequest, ...] | None]]:
        """(the pod's name for a claim, its requests where this book knows them, else None) for each of
        the pod's ``spec.resourceClaims`` (the first ``most``), the pod being in ``namespace``. A claim named
        by the pod is read by that name; one made from a template by the claim the pod's status says was
        generated for it, once this book has that claim, else by the template."""
        generated = {s.get("name"): s.get("resourceClaimName")
                     for s in _list(_mapping(pod.get("status")).get("resourceClaimStatuses")) if isinstance(s, dict)}
        for entry in _list(_mapping(pod.get("spec")).get("resourceClaims"))[:most]:
            if not isinstance(entry, dict):
                continue
            name, requests = entry.get("name"), None
            if isinstance(entry.get("resourceClaimName"), str):
                requests = self.claim(namespace, entry["resourceClaimName"])
            elif isinstance(entry.get("resourceClaimTemplateName"), str):
                if isinstance(generated.get(name), str):
                    requests = self.claim(namespace, generated[name])
                if requests is None:
                    requests = self.template(namespace, entry["resourceClaimTemplateName"])
            yield name, requests

    def asks_tessera(self, pod: dict, namespace: str) -> bool:
        """Whether a pod (as created, in ``namespace``) names a claim or claim template that asks one of
        Tessera's DeviceClasses. Claims and templates not seen yet do not count."""
        return any(requests and any(tessera_class(r.device_class) for r in requests)
                   for _, requests in self.pod_claims(pod, namespace, MAX_REQUESTS))
