"""Per GPU: its mode, its health with the reason, the grants it carries and the capacity left.

Mode and health come from the node inventory the device plugin writes (annotation
``tessera.io/gpu-inventory`` on the Node) where the API server is reachable; otherwise the mode is
read from the resources the kubelet lists as allocatable for the GPU (``nvidia.com/gpu`` ->
exclusive, ``mps-*`` -> mps, ``gpu.shared`` -> timeslice, ``mig-*`` -> mig) and health from NVML
alone. Grants and free capacity come from the kubelet's pod-resources API: allocatable device IDs
on the GPU, less those held by containers, in the resource's own units (percent for
``mps-core``, GiB for ``mps-memory``, instances for ``mig-*``, replicas for ``gpu.shared``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from exporter.podresources import PodDevices
from tessera import (
    ANNOTATION_INVENTORY, RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MIG_PREFIX, RESOURCE_MPS_CORE,
    RESOURCE_MPS_MEMORY,
)
from tessera.backoff import Backoff
from tessera.deviceids import gpu_of
from tessera.gpu import GpuInfo
from tessera.inventory import InventoryError, NodeInventory
from tessera.log import get_logger

__all__ = ["GpuLedger", "InventoryReader", "gpu_ledgers"]

log = get_logger("exporter")
_MODE_OF = {RESOURCE_GPU: "exclusive", RESOURCE_MPS_CORE: "mps", RESOURCE_MPS_MEMORY: "mps",
            RESOURCE_GPU_SHARED: "timeslice"}


@dataclass(frozen=True)
class GpuLedger:
    """What the ledger says about one GPU."""

    mode: str | None
    healthy: bool
    reason: str
    grants: dict[str, int] = field(default_factory=dict)  # resource -> containers holding some of it here
    allocatable: dict[str, int] = field(default_factory=dict)  # resource -> units on this GPU
    free: dict[str, int] = field(default_factory=dict)  # resource -> units no container holds


def _mode_of(resource: str) -> str | None:
    return "mig" if resource.startswith(RESOURCE_MIG_PREFIX) else _MODE_OF.get(resource)


def gpu_ledgers(infos: list[GpuInfo], errors: dict[str, str], devices: PodDevices | None,
                inventory: NodeInventory | None) -> dict[str, GpuLedger]:
    """GPU UUID -> its ledger; ``errors`` holds NVML's reason per GPU UUID that failed this collection."""
    parent = {m.uuid: i.uuid for i in infos for m in i.mig_instances}
    listed = {g.uuid: g for g in inventory.gpus} if inventory else {}
    modes: dict[str, str] = {}
    allocatable: dict[str, dict[str, int]] = {}
    held: dict[str, dict[str, int]] = {}
    holders: dict[str, dict[str, set]] = {}
    if devices is not None:
        for resource, ids in devices.allocatable.items():
            for device_id in ids:
                gpu = parent.get(gpu_of(device_id), gpu_of(device_id))
                units = allocatable.setdefault(gpu, {})
                units[resource] = units.get(resource, 0) + 1
                if _mode_of(resource):
                    modes.setdefault(gpu, _mode_of(resource))
        for ref, owned in devices.by_container.items():
            for resource, device_id in owned:
                gpu = parent.get(gpu_of(device_id), gpu_of(device_id))
                units = held.setdefault(gpu, {})
                units[resource] = units.get(resource, 0) + 1
                holders.setdefault(gpu, {}).setdefault(resource, set()).add(ref)
    result = {}
    for info in infos:
        if not info.uuid:
            continue
        entry = listed.get(info.uuid)
        mode = entry.mode if entry else modes.get(info.uuid) or ("mig" if info.mig_enabled else None)
        healthy, reason = True, ""
        if entry is not None and not entry.health.healthy:
            healthy, reason = False, entry.health.reason or "unhealthy in the node inventory"
        if info.uuid in errors:
            healthy, reason = False, errors[info.uuid]
        alloc = allocatable.get(info.uuid, {})
        taken = held.get(info.uuid, {})
        result[info.uuid] = GpuLedger(
            mode=mode, healthy=healthy, reason=reason,
            grants={r: len(refs) for r, refs in holders.get(info.uuid, {}).items()},
            allocatable=dict(alloc),
            free={r: max(0, n - taken.get(r, 0)) for r, n in alloc.items()},
        )
    return result


class InventoryReader:
    """Reads this node's inventory annotation from the API server every ``refresh_s``, and at each ``get``
    for a while after ``refresh_for`` (the poller calls it when an Xid arrives); after a failed read, not
    again before its backoff (:mod:`tessera.backoff`) is over."""

    def __init__(self, api_client, node_name: str, refresh_s: float = 30.0) -> None:
        import kubernetes

        self._core = kubernetes.client.CoreV1Api(api_client) if api_client is not None else None
        self.node_name = node_name
        self.refresh_s = refresh_s
        self.errors = 0
        self._last: NodeInventory | None = None
        self._read_at = float("-inf")
        self._eager_until = float("-inf")
        self._retry = Backoff()

    def refresh_for(self, seconds: float) -> None:
        """Read the inventory at every ``get`` for the next ``seconds`` (after an Xid, say)."""
        self._eager_until = time.monotonic() + seconds

    def get(self) -> NodeInventory | None:
        """The last inventory read (refreshed when due); None where there is none or no API."""
        now = time.monotonic()
        if self._core is None or (now - self._read_at < self.refresh_s and now > self._eager_until):
            return self._last
        if not self._retry.due():
            return self._last
        self._read_at = time.monotonic()
        try:
            node = json.loads(self._core.read_node(self.node_name, _preload_content=False, _request_timeout=5).data)
            text = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INVENTORY)
            self._last = NodeInventory.from_json(text) if text else None
            self._retry.reset()
        except InventoryError as err:
            self.errors += 1
            log.warning("node_inventory_unreadable", node=self.node_name, reason=str(err))
        except Exception as err:  # noqa: BLE001 - API unreachable, 404, ...: keep the last inventory
            self.errors += 1
            self._retry.failed()
            log.warning("node_inventory_read_failed", node=self.node_name, error=str(err)[:300])
        return self._last
