"""The registrar registers again with a restarted kubelet when its new socket appears, not at the next
poll: with a poll of an hour, only the folder watch can have woken it (how fast: bench/compare.py
--only nvidia-plugin, beside NVIDIA's plugin)."""

from __future__ import annotations

import os
import threading

import grpc

from deviceplugin.registration import Registrar
from simcluster.kubelet.sockets import serve_unix, stop_server
from tessera.kubeletapi import KUBELET_SOCKET_NAME, deviceplugin_grpc, deviceplugin_pb2 as api

RESOURCE = "nvidia.com/gpu"


class RecordingKubelet(deviceplugin_grpc.RegistrationServicer):
    """The kubelet's registration socket, counting the Registers it receives."""

    def __init__(self) -> None:
        self.registers: list[str] = []
        self.received = threading.Condition()

    def Register(self, request, context):  # noqa: N802
        with self.received:
            self.registers.append(request.resource_name)
            self.received.notify_all()
        return api.Empty()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self.received:
            return self.received.wait_for(lambda: len(self.registers) >= count, timeout_s)


class SocketOnlyServer:
    """Stands in for a resource's gRPC server: a socket file, and a real Register sent to the kubelet."""

    def __init__(self, plugin_dir: str) -> None:
        self.path = os.path.join(plugin_dir, "tessera-gpu.sock")

    def start(self) -> None:
        open(self.path, "w").close()

    def stop(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)

    def serving(self) -> bool:
        return os.path.exists(self.path)

    def register(self, kubelet_socket: str, timeout_s: float):
        channel = grpc.insecure_channel(f"unix://{kubelet_socket}")
        request = api.RegisterRequest(version="v1beta1", endpoint="tessera-gpu.sock", resource_name=RESOURCE)
        return deviceplugin_grpc.RegistrationStub(channel).Register.future(request, timeout=timeout_s), channel


def test_a_restarted_kubelet_gets_a_register_without_waiting_for_the_poll(tmp_path):
    plugin_dir = str(tmp_path)
    kubelet_socket = os.path.join(plugin_dir, KUBELET_SOCKET_NAME)
    kubelet = RecordingKubelet()
    server = serve_unix(kubelet_socket, lambda s: deviceplugin_grpc.add_RegistrationServicer_to_server(kubelet, s))
    registrar = Registrar(plugin_dir, lambda _: SocketOnlyServer(plugin_dir), lambda: [RESOURCE], poll_s=3600.0)
    registrar.start()
    try:
        assert kubelet.wait_for(1, 60), "no Register at start"
        # the kubelet restarts: it empties the folder, then serves a new kubelet.sock
        stop_server(server, kubelet_socket)
        os.unlink(os.path.join(plugin_dir, "tessera-gpu.sock"))
        server = serve_unix(kubelet_socket,
                            lambda s: deviceplugin_grpc.add_RegistrationServicer_to_server(kubelet, s))
        assert kubelet.wait_for(2, 60), "no Register to the new kubelet: the registrar slept until its poll"
        assert kubelet.registers == [RESOURCE, RESOURCE]
    finally:
        registrar.stop()
        stop_server(server, kubelet_socket)
