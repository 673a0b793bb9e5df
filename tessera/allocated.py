"""The device plugin's record of what the kubelet gave a pod: annotation ``tessera.io/allocated``.

Written by the plugin's ledger writer only once every Tessera resource of the pod is held (see
ARCHITECTURE.md, "The ledger"); read by the extender (to trust a plugin-written assignment, or to
count a pod whose assignment was tampered with) and by ``tessera inspect``. A versioned JSON
document, sorted keys, no spaces, its containers as in an assignment::

    {"version": 1, "node": "gpu-node-1",
     "containers": {"main": {"nvidia.com/mps-core": {"gpus": ["GPU-..."], "core": 50, "deviceIDs": [...]}}}}

    value = encode_allocated(AllocatedRecord("gpu-node-1", containers))
    record = decode_allocated(value)       # AllocatedError (one line) for anything else
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tessera.assignment import (
    WRITTEN_BY_PLUGIN,
    Assignment,
    AssignmentError,
    ResourceAssignment,
    read_containers,
    read_json_object,
)

ALLOCATED_VERSION = 1

Containers = dict[str, dict[str, ResourceAssignment]]


class AllocatedError(AssignmentError):
    """A ``tessera.io/allocated`` value that is not such a record; the message says why in one line."""


@dataclass(frozen=True)
class AllocatedRecord:
    """What the kubelet gave a pod on ``node``: per container, per resource."""

    node: str
    containers: Containers = field(default_factory=dict)

    def as_assignment(self, pod_uid: str) -> Assignment:
        """The record read as the unsigned assignment the device plugin would write for ``pod_uid``."""
        return Assignment(node=self.node, pod_uid=pod_uid, containers=self.containers, written_by=WRITTEN_BY_PLUGIN)


def encode_allocated(record: AllocatedRecord) -> str:
    """The annotation value: canonical JSON, so an unchanged record is byte-for-byte the same."""
    return json.dumps({"version": ALLOCATED_VERSION, "node": record.node,
                       "containers": {c: {r: g.to_dict() for r, g in sorted(res.items())}
                                      for c, res in sorted(record.containers.items())}},
                      sort_keys=True, separators=(",", ":"))


def decode_allocated(value: object) -> AllocatedRecord:
    """Read an annotation value (no trust implied); AllocatedError when it is not a version 1 record."""
    raw = read_json_object(value, "allocated record", AllocatedError)
    if raw.get("version") != ALLOCATED_VERSION:
        raise AllocatedError(f"allocated record is not a version {ALLOCATED_VERSION} JSON object")
    node = raw.get("node")
    if not isinstance(node, str) or not node:
        raise AllocatedError("allocated record needs a node string")
    try:
        return AllocatedRecord(node, read_containers(raw.get("containers"), "allocated"))
    except AllocatedError:
        raise
    except AssignmentError as exc:
        raise AllocatedError(str(exc)) from None
