"""The device manager's checkpoint: which container holds which devices, across kubelet restarts.

The file has the shape of the kubelet's ``/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint``
(``k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/checkpoint``)::

    {"Data": {"PodDeviceEntries": [{"PodUID": ..., "ContainerName": ..., "ResourceName": ...,
                                    "DeviceIDs": {"<NUMA node>": ["id", ...]},
                                    "AllocResp": "<base64 of the ContainerAllocateResponse>"}],
              "RegisteredDevices": {"<resource>": ["healthy id", ...]}},
     "Checksum": <uint32>}

Devices without topology sit under NUMA node ``-1`` as in the kubelet. The checksum is FNV-32a over
the canonical JSON of ``Data``; the kubelet hashes a Go-specific dump of the struct instead, so a
real kubelet would not accept this file's checksum (nor would this code accept the kubelet's).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

#: The NUMA node id the kubelet files devices under when the plugin reports no topology.
NO_TOPOLOGY_NUMA_NODE = -1


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be used (bad JSON, bad shape, checksum mismatch)."""


@dataclass
class ContainerAllocation:
    """The devices of one resource given to one container, and the plugin's Allocate answer.

    ``pod_name``/``pod_namespace`` are not part of the kubelet's checkpoint (the kubelet learns
    them from its pod manager) and are empty after a load.
    """

    pod_uid: str
    container_name: str
    resource: str
    device_ids_by_numa: dict[int, list[str]]
    response: bytes
    pod_name: str = ""
    pod_namespace: str = ""

    @property
    def device_ids(self) -> list[str]:
        """All device IDs of this allocation, each once, sorted."""
        return sorted({d for ids in self.device_ids_by_numa.values() for d in ids})


def fnv32a(data: bytes) -> int:
    """FNV-1a, 32 bits (Go's ``hash/fnv.New32a``)."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def encode_checkpoint(allocations: list[ContainerAllocation], registered: dict[str, list[str]]) -> bytes:
    """The checkpoint file's bytes for these allocations and registered (healthy) devices."""
    entries = [
        {
            "PodUID": a.pod_uid,
            "ContainerName": a.container_name,
            "ResourceName": a.resource,
            "DeviceIDs": {str(numa): list(ids) for numa, ids in sorted(a.device_ids_by_numa.items())},
            "AllocResp": base64.b64encode(a.response).decode(),
        }
        for a in allocations
    ]
    data = {
        "PodDeviceEntries": entries,
        "RegisteredDevices": {res: sorted(ids) for res, ids in sorted(registered.items())},
    }
    return json.dumps({"Data": data, "Checksum": fnv32a(_canonical(data))}).encode()


def decode_checkpoint(blob: bytes) -> tuple[list[ContainerAllocation], dict[str, list[str]]]:
    """Parse a checkpoint; raises :class:`CheckpointError` if it is malformed or its checksum is wrong."""
    try:
        doc = json.loads(blob)
        data = doc["Data"]
        if fnv32a(_canonical(data)) != doc["Checksum"]:
            raise CheckpointError("checkpoint is corrupted: checksum mismatch")
        allocations = [
            ContainerAllocation(
                pod_uid=e["PodUID"],
                container_name=e["ContainerName"],
                resource=e["ResourceName"],
                device_ids_by_numa={int(numa): list(ids) for numa, ids in (e["DeviceIDs"] or {}).items()},
                response=base64.b64decode(e["AllocResp"] or ""),
            )
            for e in data["PodDeviceEntries"] or []
        ]
        registered = {res: list(ids) for res, ids in (data["RegisteredDevices"] or {}).items()}
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint is malformed: {err}") from err
    return allocations, registered


def write_checkpoint(path: str | Path, allocations: list[ContainerAllocation], registered: dict[str, list[str]]) -> None:
    """Write the checkpoint atomically (a temporary file renamed over the old one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_checkpoint(allocations, registered))
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> tuple[list[ContainerAllocation], dict[str, list[str]]]:
    """Load the checkpoint; a missing file is an empty one. Raises :class:`CheckpointError`."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        return [], {}
    return decode_checkpoint(blob)
