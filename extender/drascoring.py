"""Node scores for pods whose GPUs come from Tessera's DRA claims, by the same placement policies.

With ``extender.dra_scoring`` on (off by default: on the Alibaba trace sample kube-scheduler's own
scoring allocated as much, README "Placement under DRA"), a pod routed to tessera-scheduler with claims
of Tessera's DeviceClasses (``webhook``) is filtered and allocated by kube-scheduler's DRA allocator; the
extender's second entry in the scheduler configuration (``prioritizeVerb: prioritize-dra``, no managed
resources) asks for its node scores. Here:

- the pod's claims are read as the request the device plugin's path would see (``dra_pod_request``): a
  ``mps.gpu.tessera.io`` request of ``cores`` and ``memory`` is ``nvidia.com/mps-core`` and
  ``nvidia.com/mps-memory``, one with no capacity takes whole GPUs through MPS (``mps-core`` in
  hundreds, as the device's default is all of it), ``gpu.tessera.io`` is ``nvidia.com/gpu`` and
  ``timeslice.gpu.tessera.io`` is ``nvidia.com/gpu.shared``, each on the container that names the claim;
- each DRA node is a ``NodeState`` built from its ``gpu.tessera.io`` devices and the claims allocated
  there (``dra_node_state``), with the CPU and memory the extender's own books hold for it;
- ``DraScorer`` keeps those states in their own ``Fleet`` and scores them with ``node_scores``.

Not scored (every node 0, kube-scheduler's other plugins decide): MIG claims (the allocator picks the
placement, and fragmentation of partitionable devices is not modelled), a share without a memory
request (the device's default is all of the card's memory), several devices per MPS request, requests
of other drivers' classes only, and claims the extender has not seen yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.inventory import GpuHealth, GpuInventory, NodeInventory
from tessera.log import get_logger
from tessera.podrequest import (
    KIND_GPU, KIND_MPS, KIND_TIMESLICE, PodRequest, RequestError, container_ask, pod_request,
)
from tessera.quantity import QuantityError, memory_bytes, parse_quantity, whole_units

from tessera.dradevices import (
    CLASS_GPU, CLASS_MPS, CLASS_TIMESLICE, MODE_EXCLUSIVE, MODE_MPS, MODE_TIMESLICE, UNHEALTHY_TAINT,
)

from extender.drabook import DeviceRequest, DraBook, Holding, tessera_class
from extender.placement import Fleet, NodeState, PolicyContext, StateError, node_scores
from extender.placement.grants import ContainerPlacement, Placement

log = get_logger("extender")

GIB = 1 << 30
CLASS_NVIDIA_GPU = "nvidia-gpu.tessera.io"   # deploy/'s class mapping nvidia.com/gpu: whole GPUs
PRUNE_EVERY = 256                            # scoring calls between two drops of nodes no longer in the fleet


class NotScored(ValueError):
    """A pod or device this scorer does not model; the message says which and why."""


def _gib(quantity: str) -> int:
    """Whole GiB of a memory quantity, rounded up (the driver's valid range steps in whole GiB)."""
    return math.ceil(memory_bytes(quantity) / GIB)


def _resources(req: DeviceRequest) -> dict[str, str]:
    """The extended resources the device plugin's path would see for one claim request."""
    if req.count < 1:
        raise NotScored(f"request {req.name!r}: not an exact count of devices")
    if req.device_class == CLASS_MPS:
        cores, memory = req.capacity.get("cores"), req.capacity.get("memory")
        if cores is None and memory is None:
            return {RESOURCE_MPS_CORE: str(100 * req.count)}
        if req.count != 1 or cores is None or memory is None:
            raise NotScored(f"request {req.name!r}: an MPS share names cores and memory of one device")
        try:  # rounded up, as kube-scheduler rounds a request up to the policy's step
            core = math.ceil(parse_quantity(cores))
            return {RESOURCE_MPS_CORE: str(core), RESOURCE_MPS_MEMORY: str(_gib(memory))}
        except (QuantityError, ValueError, OverflowError) as exc:
            raise NotScored(f"request {req.name!r}: {exc}") from None
    if req.device_class in (CLASS_GPU, CLASS_NVIDIA_GPU):
        return {RESOURCE_GPU: str(req.count)}
    if req.device_class == CLASS_TIMESLICE:
        return {RESOURCE_GPU_SHARED: str(req.count)}
    raise NotScored(f"request {req.name!r}: class {req.device_class!r} is not scored")


def dra_pod_request(pod: dict, book: DraBook, workload_label: str = "",
                    parsed: PodRequest | None = None) -> PodRequest:
    """The pod's Tessera claims as the request the device plugin's path would read: each claim's
    resources on the container naming it. ``parsed``: the pod's own request (``pod_request``), where the
    caller has read it already: only the asks of the containers naming claims are read here. Raises
    NotScored where that cannot be said."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    claims = {name: requests for name, requests in book.pod_claims(pod, namespace) if requests is not None}
    if not claims:
        raise NotScored("no claim of the pod is known to ask for Tessera's DeviceClasses")
    containers, claimed, placed = [], [], set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        resources = dict(c.get("resources") or {})
        extra: dict[str, str] = {}
        for ref in resources.get("claims") or []:
            name = ref.get("name") if isinstance(ref, dict) else None
            if name not in claims:
                continue
            for req in claims[name]:
                if ref.get("request") and ref["request"] != req.name:
                    continue
                if (name, req.name) in placed or not tessera_class(req.device_class):
                    continue
                placed.add((name, req.name))  # a request two containers name is counted once
                for resource, amount in _resources(req).items():
                    if resource in extra:
                        raise NotScored(f"container {c.get('name')!r}: two requests of {resource}")
                    extra[resource] = amount
        if extra:
            limits = {**(resources.get("limits") or {}), **extra}
            requests = {**(resources.get("requests") or {}), **extra}
            resources.update(limits=limits, requests=requests)
        containers.append({**c, "resources": resources})
        claimed.append(bool(extra))
    if not any(claimed):
        raise NotScored("no container names a Tessera claim")
    try:
        own = parsed if parsed is not None else pod_request(pod, workload_label)
        return replace(own, containers=tuple(replace(kept, ask=container_ask(c)) if claims_it else kept
                                             for c, claims_it, kept in zip(containers, claimed, own.containers)))
    except RequestError as exc:
        raise NotScored(str(exc)) from None


def _attr(device: dict, name: str):
    value = (device.get("attributes") or {}).get(name) or {}
    return next(iter(value.values()), None) if isinstance(value, dict) else None


def _capacity(device: dict, name: str) -> str | None:
    value = ((device.get("capacity") or {}).get(name) or {})
    return value.get("value") if isinstance(value, dict) else None


def _gpu_inventory(position: int, device: dict) -> GpuInventory:
    """One published whole GPU (exclusive, mps or timeslice) as the extender's inventory entry."""
    mode = _attr(device, "mode")
    if mode == MODE_TIMESLICE:   # its memory is an attribute: only replicas are capacity there
        memory_mib = int(_attr(device, "memoryMiB") or 0)
    else:
        memory_mib = memory_bytes(_capacity(device, "memory") or "0") >> 20
    taints = [t for t in device.get("taints") or [] if isinstance(t, dict) and t.get("key") == UNHEALTHY_TAINT]
    health = GpuHealth(False, str(taints[0].get("value") or "unhealthy")) if taints else GpuHealth()
    return GpuInventory(index=position, uuid=str(_attr(device, "uuid") or device.get("name")),
                        model=str(_attr(device, "productName") or ""), memory_mib=memory_mib,
                        sm_count=whole_units(_capacity(device, "multiprocessors") or 0), mode=mode, health=health)


def dra_node_state(base: NodeState, devices: Sequence[dict], holdings: Sequence[Holding]) -> NodeState:
    """A DRA node as placement sees it: its published whole GPUs (MIG devices are left out), what the
    claims allocated there hold, and ``base``'s CPU and memory (allocatable and held) and labels."""
    gpus, position, replicas = [], {}, None
    for device in devices:
        if _attr(device, "type") != "gpu" or _attr(device, "mode") not in (MODE_EXCLUSIVE, MODE_MPS, MODE_TIMESLICE):
            continue
        try:
            inv = _gpu_inventory(len(gpus), device)
            if inv.mode == MODE_TIMESLICE and replicas is None:
                replicas = whole_units(_capacity(device, "replicas") or 1)
        except (QuantityError, ValueError, TypeError):
            continue
        position[device.get("name")] = inv
        gpus.append(inv)
    node = NodeState.from_inventory(NodeInventory(node=base.name, gpus=tuple(gpus)), base.cpu_alloc, base.mem_alloc,
                                    base.labels, replicas or 1)
    node.assume(Placement(pod="", node=base.name, containers=(), cpu_milli=base.cpu_alloc - base.cpu_free,
                          memory_bytes=base.mem_alloc - base.mem_free))
    for h in holdings:
        inv = position.get(h.device)
        if inv is None:
            continue
        try:
            node.assume(Placement(pod=f"{h.claim_uid}/{h.result}", node=base.name,
                                  containers=(ContainerPlacement("claim", _grants(node, inv, h)),)))
        except (StateError, QuantityError, ValueError) as exc:
            log.warning("dra_holding_unreadable", node=base.name, device=h.device, claim=h.claim_uid, reason=str(exc))
    return node


def _grants(node: NodeState, inv: GpuInventory, holding: Holding):
    if inv.mode == MODE_MPS:
        cores = math.ceil(parse_quantity(holding.consumed.get("cores", "100")))
        gib = _gib(holding.consumed["memory"]) if "memory" in holding.consumed else inv.memory_mib // 1024
        return node.make_grants(KIND_MPS, (inv.index,), core=cores, memory_gib=gib)
    if inv.mode == MODE_TIMESLICE:
        return node.make_grants(KIND_TIMESLICE, (inv.index,))
    return node.make_grants(KIND_GPU, (inv.index,))


class DraScorer:
    """The DRA nodes' states, rebuilt when their devices, holdings or base node change, and scored.
    Call with the lock of the cache whose fleet holds the base nodes."""

    def __init__(self, book: DraBook) -> None:
        self.book = book
        self.fleet = Fleet()
        # node -> (book version, base node, base version); the base node itself is kept, and compared by
        # identity: the cache replaces a node's state on each Node update, and a new one starts at version 0
        self._built: dict[str, tuple[int, NodeState, int]] = {}
        self._calls = 0

    def _refresh(self, base_fleet: Fleet, names: Sequence[str]) -> list[str]:
        """The DRA nodes among ``names`` (nodes with Tessera devices), each state current."""
        self._calls += 1
        if self._calls % PRUNE_EVERY == 0:
            for name in [n for n in self._built if n not in base_fleet or not self.book.node_version(n)]:
                self._drop(name)
        out = []
        for name in names:
            version = self.book.node_version(name)
            base = base_fleet.get(name)
            if not version or base is None:
                self._drop(name)
                continue
            built = self._built.get(name)
            if built is None or built[0] != version or built[1] is not base or built[2] != base.version:
                self.fleet.add(dra_node_state(base, self.book.devices(name), self.book.holdings(name)))
                self._built[name] = (version, base, base.version)
            if self.fleet[name].gpus:
                out.append(name)
        return out

    def _drop(self, name: str) -> None:
        if self._built.pop(name, None) is not None:
            self.fleet.remove(name)

    def scores(self, request: PodRequest, base_fleet: Fleet, ctx: PolicyContext,
               names: Sequence[str]) -> list[tuple[str, int]]:
        """(node, score 0..10) for each of ``names``: DRA nodes by the request's policy, others 0."""
        dra = self._refresh(base_fleet, names)
        scored = dict(node_scores(request, self.fleet, ctx, dra).pairs()) if dra else {}
        return [(name, scored.get(name, 0)) for name in names]
