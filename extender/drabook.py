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
from collections.abc import Iterable
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
    """Tessera's DRA devices and allocations per node, and claim and template requests by name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._slices: dict[str, tuple[str, int, tuple[dict, ...]]] = {}   # slice name -> (node, generation, devices)
        self._claims: dict[str, tuple[str, tuple[DeviceRequest, ...], tuple[tuple[str, Holding], ...]]] = {}
        self._templates: dict[str, tuple[DeviceRequest, ...]] = {}        # ns/name -> requests
        self._node_versions: dict[str, int] = {}
        self._clock = 0

    # -- events ----------------------------------------------------------------------------------

    def _touch(self, nodes: Iterable[str]) -> None:
        self._clock += 1
        for node in nodes:
            if node:
                self._node_versions[node] = self._clock

    def slice_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceSlice (other drivers' slices are ignored)."""
        name = str(_mapping(obj.get("metadata")).get("name", ""))
        spec = _mapping(obj.get("spec"))
        with self.lock:
            old = self._slices.pop(name, None)
            touched = [old[0]] if old else []
            if kind != "DELETED" and spec.get("driver") == DRIVER_NAME and isinstance(spec.get("nodeName"), str):
                pool = _mapping(spec.get("pool"))
                generation = pool.get("generation", 0)
                devices = tuple(d for d in _list(spec.get("devices")) if isinstance(d, dict))
                self._slices[name] = (spec["nodeName"], generation if isinstance(generation, int) else 0, devices)
                touched.append(spec["nodeName"])
            self._touch(touched)

    def claim_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceClaim."""
        meta = _mapping(obj.get("metadata"))
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        with self.lock:
            old = self._claims.pop(key, None)
            touched = {node for node, _ in old[2]} if old else set()
            if kind != "DELETED":
                uid = str(meta.get("uid", key))
                held = []
                results = _mapping(_mapping(_mapping(obj.get("status")).get("allocation")).get("devices")).get("results")
                for i, result in enumerate(_list(results)):
                    result = _mapping(result)
                    if result.get("driver") != DRIVER_NAME or not isinstance(result.get("pool"), str):
                        continue
                    consumed = {str(k): str(v) for k, v in _mapping(result.get("consumedCapacity")).items()
                                if isinstance(v, (str, int))}
                    held.append((result["pool"], Holding(uid, i, str(result.get("device", "")), consumed)))
                self._claims[key] = (uid, claim_requests(obj.get("spec")), tuple(held))
                touched.update(node for node, _ in held)
            if touched:
                self._touch(touched)

    def template_event(self, kind: str, obj: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED ResourceClaimTemplate."""
        meta = _mapping(obj.get("metadata"))
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        with self.lock:
            if kind == "DELETED":
                self._templates.pop(key, None)
            else:
                self._templates[key] = claim_requests(_mapping(obj.get("spec")).get("spec"))

    def forget_missing(self, kind: str, present: set[str]) -> None:
        """After a relist: drop the objects of ``kind`` (resourceslices, resourceclaims,
        resourceclaimtemplates) whose key (name, or namespace/name) is not in ``present``."""
        with self.lock:
            table = {"resourceslices": self._slices, "resourceclaims": self._claims,
                     "resourceclaimtemplates": self._templates}[kind]
            gone = [k for k in table if k not in present]
        deleted = {"resourceslices": self.slice_event, "resourceclaims": self.claim_event,
                   "resourceclaimtemplates": self.template_event}[kind]
        for key in gone:
            ns, _, name = key.rpartition("/")
            deleted("DELETED", {"metadata": {"namespace": ns, "name": name}})

    # -- reads -----------------------------------------------------------------------------------

    def node_version(self, node: str) -> int:
        """Changes whenever the node's devices or holdings do (0: never seen)."""
        with self.lock:
            return self._node_versions.get(node, 0)

    def devices(self, node: str) -> list[dict]:
        """The node's ``gpu.tessera.io`` devices, from its slices of the newest pool generation."""
        with self.lock:
            slices = [(gen, devs) for n, gen, devs in self._slices.values() if n == node]
        if not slices:
            return []
        newest = max(gen for gen, _ in slices)
        return [d for gen, devs in slices if gen == newest for d in devs]

    def holdings(self, node: str) -> list[Holding]:
        """What allocated claims hold on the node."""
        with self.lock:
            return [h for _, _, held in self._claims.values() for n, h in held if n == node]

    def claim(self, namespace: str, name: str) -> tuple[DeviceRequest, ...] | None:
        """A claim's requests (None: not seen)."""
        with self.lock:
            kept = self._claims.get(f"{namespace}/{name}")
        return kept[1] if kept is not None else None

    def template(self, namespace: str, name: str) -> tuple[DeviceRequest, ...] | None:
        """A claim template's requests (None: not seen)."""
        with self.lock:
            return self._templates.get(f"{namespace}/{name}")

    def asks_tessera(self, pod: dict, namespace: str) -> bool:
        """Whether a pod (as created, in ``namespace``) names a claim or claim template that asks one of
        Tessera's DeviceClasses. Claims and templates not seen yet do not count."""
        spec = _mapping(pod.get("spec"))
        for entry in _list(spec.get("resourceClaims"))[:MAX_REQUESTS]:
            entry = _mapping(entry)
            requests = None
            if isinstance(entry.get("resourceClaimTemplateName"), str):
                requests = self.template(namespace, entry["resourceClaimTemplateName"])
            elif isinstance(entry.get("resourceClaimName"), str):
                requests = self.claim(namespace, entry["resourceClaimName"])
            if requests and any(tessera_class(r.device_class) for r in requests):
                return True
        return False
