"""GPU health the Node records across plugin restarts: fatal Xids carried over, and the admin's clear.

NVML keeps no memory of Xids: a plugin started again reads a GPU that had a fatal Xid as fine. The
Node's inventory annotation (``tessera.io/gpu-inventory``, written by this plugin) does remember, so
at start the plugin reads it and keeps every GPU that was out for a fatal Xid (config
``fatal_xids``; the Xid number is read from ``health.reason``) out again, with the same reason and
``since``. GPUs out for other reasons are not carried over: application Xids never take a GPU out,
other Xids are transient (quiet period), and a GPU NVML cannot read is found again by reading it.

A carried-over GPU comes back as any fatal one does: when the GPU is reset or back on the bus
(NVML fails to read it, then reads it well), or when the admin says so with the Node annotation
``tessera.io/clear-gpu-health: <GPU-uuid>[,<GPU-uuid>...]`` (``all`` clears every GPU of the node
that NVML can read). The plugin reads it at start and whenever it changes, brings those GPUs back,
and removes the annotation, so it is a one-shot command and never clears a later fatal Xid::

    kubectl annotate node gpu-07 tessera.io/clear-gpu-health=GPU-5f0c...
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tessera import ANNOTATION_INVENTORY
from tessera.inventory import InventoryError, NodeInventory
from tessera.log import get_logger

log = get_logger("deviceplugin")

ANNOTATION_CLEAR_HEALTH = "tessera.io/clear-gpu-health"
CLEAR_ALL = "all"
_XID = re.compile(r"\bXid (\d+)\b")


def _annotations(node: dict | None) -> dict[str, str]:
    return ((node or {}).get("metadata") or {}).get("annotations") or {}


def fatal_outages(node: dict | None, fatal_xids: Iterable[int]) -> dict[str, tuple[str, str]]:
    """GPU UUID -> (reason, since) for each GPU the Node's inventory shows out for a fatal Xid."""
    text = _annotations(node).get(ANNOTATION_INVENTORY)
    if not text:
        return {}
    try:
        inventory = NodeInventory.from_json(text)
    except InventoryError as err:
        log.warning("node_inventory_unreadable", reason=str(err), effect="no fatal Xid carried over")
        return {}
    fatal = set(fatal_xids)
    found = {}
    for gpu in inventory.gpus:
        match = _XID.search(gpu.health.reason)
        if not gpu.health.healthy and match and int(match.group(1)) in fatal:
            found[gpu.uuid] = (gpu.health.reason, gpu.health.since)
    return found


def clear_request(node: dict | None) -> list[str] | None:
    """The GPU UUIDs (or ``["all"]``) the admin asked to clear; None when the annotation is absent."""
    value = _annotations(node).get(ANNOTATION_CLEAR_HEALTH)
    if value is None:
        return None
    return [u.strip() for u in value.split(",") if u.strip()]


def carry_over(rm, node: dict | None, fatal_xids: Iterable[int]) -> list[int]:
    """Put GPUs that were out for a fatal Xid out again (``rm``: a NodeDevices); their indexes."""
    outages = fatal_outages(node, fatal_xids)
    out = rm.carry_over_health(outages) if outages else []
    if outages:
        log.info("fatal_xids_carried_over", gpus=out, uuids=sorted(outages))
    return out


def apply_clear(rm, requested: list[str]) -> list[int]:
    """Bring back the GPUs the admin cleared (``rm``: a NodeDevices); their indexes."""
    mine = {g.uuid for g in rm.gpu_infos()}
    uuids = sorted(mine) if CLEAR_ALL in requested else requested
    unknown = sorted(set(requested) - mine - {CLEAR_ALL})
    back = rm.clear_health(uuids)
    log.info("gpu_health_clear_applied", requested=requested, back=back, unknown=unknown or None)
    return back
