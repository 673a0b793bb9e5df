"""Who holds which device, from the kubelet's pod-resources API v1 (``List`` and ``GetAllocatableResources``).

The kubelet's answer is the truth of who holds what: each container's device IDs per resource.
Tessera's device IDs name their GPU: a GPU UUID, a MIG instance UUID, or
a share ID (``tessera.deviceids``), so every ID maps to the GPU (or MIG instance) it lives on. A socket that is missing or does not answer raises
:class:`PodResourcesUnavailable`; the exporter then serves metrics without pod labels.

gRPC is imported when a client first reads, not with this module: the collector and the snapshot import
:class:`ContainerRef` from here, and the GPU check (``gpucheck``) uses them on a machine that carries no
grpcio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from tessera.deviceids import gpu_of

if TYPE_CHECKING:
    import grpc

    from tessera.kubeletapi import podresources_grpc

__all__ = ["ContainerRef", "PodDevices", "PodResourcesClient", "PodResourcesUnavailable"]


class PodResourcesUnavailable(RuntimeError):
    """The pod-resources socket is missing or did not answer; the message says which."""


@dataclass(frozen=True, order=True)
class ContainerRef:
    """A container as Kubernetes names it."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class PodDevices:
    """One reading of the pod-resources API."""

    #: container -> ((resource, device id), ...)
    by_container: dict[ContainerRef, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    #: resource -> every allocatable (healthy) device id
    allocatable: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def holders(self) -> dict[str, set[ContainerRef]]:
        """GPU or MIG UUID -> the containers holding any device ID on it."""
        found: dict[str, set[ContainerRef]] = {}
        for ref, devices in self.by_container.items():
            for _, device_id in devices:
                found.setdefault(gpu_of(device_id), set()).add(ref)
        return found


class PodResourcesClient:
    """A client of the kubelet's pod-resources socket; one channel, reconnected by gRPC as needed."""

    def __init__(self, socket_path: str, timeout_s: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._channel: grpc.Channel | None = None
        self._stub: podresources_grpc.PodResourcesListerStub | None = None

    def read(self) -> PodDevices:
        """List every pod's devices and the allocatable devices; PodResourcesUnavailable on failure."""
        import grpc

        from tessera.kubeletapi import podresources_grpc, podresources_pb2 as api

        if not os.path.exists(self.socket_path):
            raise PodResourcesUnavailable(f"pod-resources socket {self.socket_path} does not exist")
        if self._stub is None:
            self._channel = grpc.insecure_channel(f"unix://{self.socket_path}")
            self._stub = podresources_grpc.PodResourcesListerStub(self._channel)
        try:
            pods = self._stub.List(api.ListPodResourcesRequest(), timeout=self.timeout_s).pod_resources
            allocatable = self._stub.GetAllocatableResources(
                api.AllocatableResourcesRequest(), timeout=self.timeout_s).devices
        except grpc.RpcError as err:
            self.close()  # a fresh channel next time: the kubelet may have recreated the socket
            raise PodResourcesUnavailable(
                f"pod-resources socket {self.socket_path}: {err.code().name}: {err.details()}") from None
        by_container: dict[ContainerRef, tuple[tuple[str, str], ...]] = {}
        for pod in pods:
            for container in pod.containers:
                devices = tuple((d.resource_name, i) for d in container.devices for i in d.device_ids)
                if devices:
                    by_container[ContainerRef(pod.namespace, pod.name, container.name)] = devices
        free: dict[str, set[str]] = {}
        for entry in allocatable:
            free.setdefault(entry.resource_name, set()).update(entry.device_ids)
        return PodDevices(by_container, {r: tuple(sorted(ids)) for r, ids in free.items()})

    def close(self) -> None:
        """Close the channel (the next read opens a new one)."""
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stub = None, None
