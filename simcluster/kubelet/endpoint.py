"""One registered device plugin, seen from the kubelet: its options, its device stream, its RPCs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from simcluster.kubelet.sockets import dial_unix
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api
from tessera.log import get_logger

# As the real kubelet: 10 s to dial a plugin that registered, and no deadline on its RPCs
# (pkg/kubelet/cm/devicemanager: dial() and endpointImpl.allocate use context.Background()), so a
# plugin slowed by a busy machine is waited for, not failed.
DIAL_TIMEOUT_S = 10.0

log = get_logger("simkubelet")


class PluginEndpoint:
    """The kubelet's client of one device plugin serving ``resource`` on ``socket_path``.

    :meth:`connect` dials and reads the plugin's options; :meth:`watch` consumes ListAndWatch in a
    thread, handing every device list to ``on_devices`` and calling ``on_stopped`` once when the
    stream ends by itself (the plugin went away). :meth:`close` ends the stream without
    ``on_stopped``.
    """

    def __init__(
        self,
        resource: str,
        socket_path: str,
        on_devices: Callable[[PluginEndpoint, list[api.Device]], None],
        on_stopped: Callable[[PluginEndpoint], None],
        dial_timeout_s: float = DIAL_TIMEOUT_S,
        rpc_timeout_s: float | None = None,
    ) -> None:
        self.resource = resource
        self.socket_path = socket_path
        self.options = api.DevicePluginOptions()
        self._on_devices = on_devices
        self._on_stopped = on_stopped
        self._dial_timeout_s = dial_timeout_s
        self._rpc_timeout_s = rpc_timeout_s
        self._channel: grpc.Channel | None = None
        self._stub: deviceplugin_grpc.DevicePluginStub | None = None
        self._stream = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self) -> api.DevicePluginOptions:
        """Dial the plugin and ask for its options (raises ConnectionError or grpc.RpcError)."""
        self._channel = dial_unix(self.socket_path, self._dial_timeout_s)
        self._stub = deviceplugin_grpc.DevicePluginStub(self._channel)
        try:
            self.options = self._stub.GetDevicePluginOptions(api.Empty(), timeout=self._rpc_timeout_s)
        except grpc.RpcError:
            self._channel.close()
            raise
        return self.options

    def watch(self) -> None:
        """Start consuming ListAndWatch in a background thread."""
        assert self._stub is not None, "connect() first"
        self._stream = self._stub.ListAndWatch(api.Empty())
        self._thread = threading.Thread(
            target=self._consume, name=f"listandwatch-{self.resource}", daemon=True
        )
        self._thread.start()

    def _consume(self) -> None:
        try:
            for response in self._stream:
                if self._closed.is_set():
                    return
                self._on_devices(self, list(response.devices))
        except grpc.RpcError as err:
            if not self._closed.is_set():
                log.info("plugin_stream_failed", resource=self.resource, code=err.code().name, detail=err.details())
        if not self._closed.is_set():
            self._on_stopped(self)

    def preferred_allocation(self, available: list[str], must_include: list[str], size: int) -> list[str]:
        """Call GetPreferredAllocation for one container; returns the plugin's preferred IDs."""
        assert self._stub is not None
        request = api.PreferredAllocationRequest(
            container_requests=[
                api.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available, must_include_deviceIDs=must_include, allocation_size=size
                )
            ]
        )
        response = self._stub.GetPreferredAllocation(request, timeout=self._rpc_timeout_s)
        if not response.container_responses:
            return []
        return list(response.container_responses[0].deviceIDs)

    def allocate(self, device_ids: list[str]) -> api.AllocateResponse:
        """Call Allocate for one container with these device IDs."""
        assert self._stub is not None
        request = api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(devices_ids=device_ids)])
        return self._stub.Allocate(request, timeout=self._rpc_timeout_s)

    def close(self) -> None:
        """Cancel the stream and close the channel; ``on_stopped`` is not called."""
        self._closed.set()
        if self._stream is not None:
            self._stream.cancel()
        if self._channel is not None:
            self._channel.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def grpc_error_text(err: grpc.RpcError) -> str:
    """A gRPC error as Go's status error prints it: ``rpc error: code = Unknown desc = ...``."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    words = "".join(part.capitalize() for part in code.name.split("_"))
    detail = err.details() if hasattr(err, "details") else str(err)
    return f"rpc error: code = {words} desc = {detail}"
