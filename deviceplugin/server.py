"""One gRPC device-plugin server per resource, on its own unix socket: thin, asks for every decision.

``start`` serves the socket, ``register`` tells the kubelet about it (serve first, then register),
then one method per RPC: ListAndWatch streams the resource manager's listing whenever it changes,
GetPreferredAllocation and Allocate go to :class:`deviceplugin.allocator.Allocator`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from deviceplugin.allocator import Allocator
from deviceplugin.rm import NodeDevices, RequestError
from tessera.kubeletapi import API_VERSION, HEALTHY, UNHEALTHY
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api
from tessera.log import get_logger

log = get_logger("deviceplugin")
OPTIONS = api.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)


def socket_name(resource: str) -> str:
    """``nvidia.com/mps-core`` -> ``tessera-mps-core.sock``."""
    return "tessera-" + resource.split("/", 1)[1] + ".sock"


class ServeError(OSError):
    """A resource's socket cannot be served; the message says why."""


class ResourceServer(deviceplugin_grpc.DevicePluginServicer):
    """The kubelet's view of one resource."""

    def __init__(self, resource: str, rm: NodeDevices, allocator: Allocator, plugin_dir: str) -> None:
        self.resource = resource
        self.rm = rm
        self.allocator = allocator
        self.plugin_dir = plugin_dir
        self.socket_path = os.path.join(plugin_dir, socket_name(resource))
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Serve on the resource's socket (a stale file there is replaced)."""
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._stopped.clear()
        server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"dp-{socket_name(self.resource)}"))
        deviceplugin_grpc.add_DevicePluginServicer_to_server(self, server)
        try:
            bound = server.add_insecure_port(f"unix://{self.socket_path}")
        except RuntimeError:   # grpcio >= 1.60 raises where older ones returned 0
            bound = 0
        if bound == 0:
            server.stop(grace=None)
            if not os.path.isdir(self.plugin_dir):
                raise ServeError(f"cannot listen on {self.socket_path}: the folder {self.plugin_dir} does not "
                                 "exist; --device-plugin-path must be the kubelet's device-plugin folder (the "
                                 "kubelet makes /var/lib/kubelet/device-plugins, whatever its --root-dir)")
            raise ServeError(f"cannot listen on {self.socket_path}")
        server.start()
        self._server = server

    def register(self, kubelet_socket: str, timeout_s: float = 5.0) -> tuple[grpc.Future, grpc.Channel]:
        """Send the RegisterRequest to the kubelet without waiting: the call's future (its ``result()``
        raises grpc.RpcError if the kubelet refuses, or is not there: no waiting for it to come) and
        its channel, to close once the call is over or given up (``future.cancel()``)."""
        channel = grpc.insecure_channel(f"unix://{kubelet_socket}")
        stub = deviceplugin_grpc.RegistrationStub(channel)
        request = api.RegisterRequest(version=API_VERSION, endpoint=socket_name(self.resource),
                                      resource_name=self.resource, options=OPTIONS)
        return stub.Register.future(request, timeout=timeout_s), channel

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def serving(self) -> bool:
        """Whether the socket file is still there (the kubelet deletes it when it restarts)."""
        return self._server is not None and os.path.exists(self.socket_path)

    # ---- RPCs ---------------------------------------------------------------------------------
    def GetDevicePluginOptions(self, request, context):  # noqa: N802
        return OPTIONS

    def _listing(self) -> list[api.Device]:
        devices = []
        for device, healthy in self.rm.listing(self.resource):
            item = api.Device(ID=device.id, health=HEALTHY if healthy else UNHEALTHY)
            if device.numa_node is not None:
                item.topology.nodes.add(ID=device.numa_node)
            devices.append(item)
        return devices

    def ListAndWatch(self, request, context):  # noqa: N802
        version = self.rm.version
        last = None
        while not self._stopped.is_set() and context.is_active():
            listing = self._listing()
            key = [(d.ID, d.health) for d in listing]
            if key != last:
                last = key
                unhealthy = sum(1 for d in listing if d.health != HEALTHY)
                log.info("device_list_sent", resource=self.resource, devices=len(listing), unhealthy=unhealthy)
                yield api.ListAndWatchResponse(devices=listing)
            version = self.rm.wait_change(version, 0.5)

    def GetPreferredAllocation(self, request, context):  # noqa: N802
        response = api.PreferredAllocationResponse()
        for req in request.container_requests:
            ids = self.allocator.preferred(self.resource, list(req.available_deviceIDs),
                                           list(req.must_include_deviceIDs), req.allocation_size)
            response.container_responses.add(deviceIDs=ids)
        return response

    def Allocate(self, request, context):  # noqa: N802
        response = api.AllocateResponse()
        for req in request.container_requests:
            try:
                response.container_responses.append(self.allocator.allocate(self.resource, list(req.devices_ids)))
            except RequestError as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return response

    def PreStartContainer(self, request, context):  # noqa: N802
        return api.PreStartContainerResponse()
