"""The node inventory: annotation ``tessera.io/gpu-inventory`` on each Node, a versioned JSON document.

Written by the device plugin at start and whenever inventory, health or mode changes (never on a
timer); read by the extender, the exporter and ``tessera inspect``. The document is a contract
between the parts: readers refuse a version they do not know rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tessera import GPU_MODES

INVENTORY_VERSION = 1


class InventoryError(ValueError):
    """An inventory document that cannot be read; the message says which field."""


@dataclass(frozen=True)
class MigSlot:
    """One MIG instance on a GPU."""

    profile: str
    uuid: str
    gi_id: int
    ci_id: int
    memory_mib: int
    sm_count: int
    placement_start: int
    placement_size: int
    healthy: bool = True


@dataclass(frozen=True)
class GpuHealth:
    """Health of one GPU; ``reason`` says why it is out (empty when healthy)."""

    healthy: bool = True
    reason: str = ""
    since: str = ""


@dataclass(frozen=True)
class GpuInventory:
    """One GPU as the scheduler and the operator see it."""

    index: int
    uuid: str
    model: str
    memory_mib: int
    sm_count: int
    mode: str
    health: GpuHealth = field(default_factory=GpuHealth)
    numa_node: int | None = None
    nvlink_peers: tuple[int, ...] = ()
    mig: tuple[MigSlot, ...] = ()
    pending_mode: str | None = None  # a mode change waiting for the GPU to drain

    @property
    def memory_gib(self) -> int:
        """Whole GiB of memory: the ``nvidia.com/mps-memory`` units this GPU offers."""
        return self.memory_mib // 1024


@dataclass(frozen=True)
class NodeInventory:
    """Every GPU of one node."""

    node: str
    gpus: tuple[GpuInventory, ...]
    version: int = INVENTORY_VERSION

    def to_json(self) -> str:
        """The annotation value: compact JSON with keys in a stable order."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NodeInventory":
        """Parse an annotation value; raises InventoryError naming the bad field."""
        try:
            doc = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InventoryError(f"inventory is not JSON: {exc}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> "NodeInventory":
        if not isinstance(doc, dict):
            raise InventoryError("inventory: expected a JSON object")
        version = doc.get("version")
        if version != INVENTORY_VERSION:
            raise InventoryError(f"inventory version {version!r} is not supported (expected {INVENTORY_VERSION})")
        node = _get(doc, "node", str, "inventory")
        gpus_raw = _get(doc, "gpus", list, "inventory")
        return cls(node=node, gpus=tuple(_gpu_from_dict(g, f"inventory.gpus[{i}]") for i, g in enumerate(gpus_raw)))


def _get(doc: dict, key: str, tp: type | tuple, where: str, default: Any = ...) -> Any:
    if key not in doc:
        if default is not ...:
            return default
        raise InventoryError(f"{where}.{key}: missing")
    value = doc[key]
    if isinstance(value, bool) and tp in (int, (int, type(None))):
        raise InventoryError(f"{where}.{key}: {value!r} is not a number")
    if not isinstance(value, tp):
        raise InventoryError(f"{where}.{key}: {value!r} has the wrong type")
    return value


def _gpu_from_dict(doc: Any, where: str) -> GpuInventory:
    if not isinstance(doc, dict):
        raise InventoryError(f"{where}: expected an object")
    mode = _get(doc, "mode", str, where)
    if mode not in GPU_MODES:
        raise InventoryError(f"{where}.mode: {mode!r} is not one of {', '.join(GPU_MODES)}")
    health = _get(doc, "health", dict, where, {})
    mig = tuple(
        MigSlot(**{k: _get(m, k, t, f"{where}.mig[{i}]") for k, t in _MIG_FIELDS.items()},
                healthy=_get(m, "healthy", bool, f"{where}.mig[{i}]", True))
        for i, m in enumerate(_get(doc, "mig", list, where, []))
    )
    return GpuInventory(
        index=_get(doc, "index", int, where),
        uuid=_get(doc, "uuid", str, where),
        model=_get(doc, "model", str, where),
        memory_mib=_get(doc, "memory_mib", int, where),
        sm_count=_get(doc, "sm_count", int, where),
        mode=mode,
        health=GpuHealth(healthy=_get(health, "healthy", bool, f"{where}.health", True),
                         reason=_get(health, "reason", str, f"{where}.health", ""),
                         since=_get(health, "since", str, f"{where}.health", "")),
        numa_node=_get(doc, "numa_node", (int, type(None)), where, None),
        nvlink_peers=tuple(_get(doc, "nvlink_peers", list, where, [])),
        mig=mig,
        pending_mode=_get(doc, "pending_mode", (str, type(None)), where, None),
    )


_MIG_FIELDS: dict[str, type] = {
    "profile": str, "uuid": str, "gi_id": int, "ci_id": int, "memory_mib": int, "sm_count": int,
    "placement_start": int, "placement_size": int,
}
