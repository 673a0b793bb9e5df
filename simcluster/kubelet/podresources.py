"""The kubelet's pod-resources API v1 (``PodResourcesLister``) over a unix socket.

Answers as the kubelet does: List gives every pod with each container's devices, one
ContainerDevices per resource and NUMA node (no topology for devices the plugin gave none);
GetAllocatableResources gives each healthy device on its own, once per NUMA node; Get gives one pod,
or NotFound. CPU and memory assignments are not simulated (always empty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from simcluster.kubelet.checkpoint import NO_TOPOLOGY_NUMA_NODE, ContainerAllocation
from simcluster.kubelet.sockets import serve_unix, stop_server
from tessera.kubeletapi import podresources_grpc, podresources_pb2 as api
from tessera.log import get_logger

if TYPE_CHECKING:
    from simcluster.kubelet.devicemanager import DeviceManager

log = get_logger("simkubelet")

#: Returns the node's active pods as the API server returns them (dicts with metadata and spec).
ActivePods = Callable[[], list[dict]]


def _container_devices(allocations: list[ContainerAllocation]) -> list[api.ContainerDevices]:
    result = []
    for allocation in sorted(allocations, key=lambda a: a.resource):
        for numa, ids in sorted(allocation.device_ids_by_numa.items()):
            entry = api.ContainerDevices(resource_name=allocation.resource, device_ids=ids)
            if numa != NO_TOPOLOGY_NUMA_NODE:
                entry.topology.nodes.add(ID=numa)
            result.append(entry)
    return result


def _pod_containers(pod: dict) -> list[str]:
    """Regular containers, then restartable init containers (sidecars), as the kubelet lists them."""
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    names += [c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return names


class PodResourcesServer:
    """Serves ``PodResourcesLister`` on ``socket_path`` from a :class:`DeviceManager`'s state."""

    def __init__(self, manager: DeviceManager, socket_path: str, active_pods: ActivePods | None = None) -> None:
        self.manager = manager
        self.socket_path = socket_path
        self.active_pods = active_pods
        self._server: grpc.Server | None = None

    def start(self) -> None:
        """Serve on the socket (a stale file there is replaced)."""
        servicer = _Lister(self)
        self._server = serve_unix(
            self.socket_path, lambda s: podresources_grpc.add_PodResourcesListerServicer_to_server(servicer, s), 4
        )
        log.info("pod_resources_serving", socket=self.socket_path)

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            stop_server(self._server, self.socket_path)
            self._server = None

    def pods(self) -> list[api.PodResources]:
        """Every pod with its containers' devices."""
        allocations = self.manager.allocations()
        by_container: dict[tuple[str, str], list[ContainerAllocation]] = {}
        for allocation in allocations:
            by_container.setdefault((allocation.pod_uid, allocation.container_name), []).append(allocation)
        if self.active_pods is not None:
            pods = [
                (p["metadata"]["uid"], p["metadata"]["name"], p["metadata"].get("namespace", "default"),
                 _pod_containers(p))
                for p in self.active_pods()
            ]
        else:
            pods, seen = [], {}
            for allocation in allocations:
                if allocation.pod_uid not in seen:
                    seen[allocation.pod_uid] = []
                    pods.append((allocation.pod_uid, allocation.pod_name, allocation.pod_namespace,
                                 seen[allocation.pod_uid]))
                if allocation.container_name not in seen[allocation.pod_uid]:
                    seen[allocation.pod_uid].append(allocation.container_name)
        return [
            api.PodResources(
                name=name, namespace=namespace,
                containers=[
                    api.ContainerResources(name=c, devices=_container_devices(by_container.get((uid, c), [])))
                    for c in containers
                ],
            )
            for uid, name, namespace, containers in pods
        ]

    def allocatable(self) -> list[api.ContainerDevices]:
        """Each healthy device as its own entry, once per NUMA node it sits on."""
        result = []
        for resource, devices in sorted(self.manager.healthy_devices().items()):
            for device_id, numa_nodes in sorted(devices.items()):
                if not numa_nodes:
                    result.append(api.ContainerDevices(resource_name=resource, device_ids=[device_id]))
                for numa in numa_nodes:
                    entry = api.ContainerDevices(resource_name=resource, device_ids=[device_id])
                    entry.topology.nodes.add(ID=numa)
                    result.append(entry)
        return result


class _Lister(podresources_grpc.PodResourcesListerServicer):
    def __init__(self, server: PodResourcesServer) -> None:
        self._server = server

    def List(self, request, context):  # noqa: N802
        return api.ListPodResourcesResponse(pod_resources=self._server.pods())

    def GetAllocatableResources(self, request, context):  # noqa: N802
        return api.AllocatableResourcesResponse(devices=self._server.allocatable())

    def Get(self, request, context):  # noqa: N802
        for pod in self._server.pods():
            if (pod.name, pod.namespace) == (request.pod_name, request.pod_namespace):
                return api.GetPodResourcesResponse(pod_resources=pod)
        context.abort(grpc.StatusCode.NOT_FOUND,
                      f"pod {request.pod_name} in namespace {request.pod_namespace} not found")
