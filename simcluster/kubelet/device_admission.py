"""Pod admission as the real kubelet does it: one pod at a time, in the order pods reach the node.

For each container the extended resources are visited in random order (the kubelet iterates a Go
map); each goes through the device manager (GetPreferredAllocation, then Allocate). A failure marks
the pod ``Failed`` with reason ``UnexpectedAdmissionError`` and the plugin's message, and the pod is
not retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from simcluster.kubelet.devicemanager import is_extended_resource_name
from tessera.quantity import whole_units


class DeviceAllocator(Protocol):
    def allocate(self, pod_uid: str, pod_name: str, pod_namespace: str, container_name: str,
                 resource: str, count: int) -> Any: ...

    def capacity(self) -> dict[str, int]: ...

    def release_pod(self, pod_uid: str) -> None: ...


@dataclass
class AdmissionResult:
    """What admitting one pod gave: per container its Allocate responses, or why the pod failed."""

    responses: dict[str, list[Any]] = field(default_factory=dict)
    failed_reason: str = ""
    failed_message: str = ""

    @property
    def admitted(self) -> bool:
        return not self.failed_reason


def extended_resources(container: dict) -> dict[str, int]:
    """The device-plugin resources a container asks for (limits; requests must equal them)."""
    resources = container.get("resources") or {}
    limits = dict(resources.get("limits") or {})
    for name, value in (resources.get("requests") or {}).items():
        limits.setdefault(name, value)
    return {name: whole_units(value) for name, value in limits.items() if is_extended_resource_name(name)}


def admit_pod(pod: dict, devices: DeviceAllocator, rng: random.Random, admission_error: type[Exception]) -> AdmissionResult:
    """Allocate every device resource of every container of ``pod``; on failure release what was given."""
    meta = pod["metadata"]
    result = AdmissionResult()
    capacity = devices.capacity()
    for container in pod["spec"].get("containers", []):
        wanted = extended_resources(container)
        for resource, count in wanted.items():
            if count > capacity.get(resource, 0):
                # The kubelet's resource-fit admission runs before the device manager.
                result.failed_reason = f"OutOf{resource}"
                result.failed_message = (f"Pod was rejected: Node didn't have enough resource: {resource}, "
                                         f"requested: {count}, capacity: {capacity.get(resource, 0)}")
                devices.release_pod(meta["uid"])
                return result
        order = list(wanted.items())
        rng.shuffle(order)
        responses = []
        for resource, count in order:
            try:
                responses.append(devices.allocate(meta["uid"], meta["name"], meta.get("namespace", "default"),
                                                  container["name"], resource, count))
            except admission_error as exc:
                # The device manager words it as the kubelet does: "Allocate failed due to ..., which is unexpected".
                result.failed_reason = getattr(exc, "reason", "UnexpectedAdmissionError")
                result.failed_message = str(exc)
                devices.release_pod(meta["uid"])
                return result
        result.responses[container["name"]] = responses
    return result
