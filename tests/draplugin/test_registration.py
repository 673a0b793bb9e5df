"""The kubelet's plugin watcher's two calls, on the driver's real registration socket."""

from __future__ import annotations

import os
import stat

import grpc

from draharness import DRIVER
from tessera.kubeletapi import registration_grpc, registration_pb2


def test_get_info_names_a_dra_driver_its_socket_and_the_v1_service(driver):
    d = driver({})
    assert stat.S_ISSOCK(os.stat(d.registration_socket).st_mode)
    with grpc.insecure_channel(f"unix://{d.registration_socket}") as channel:
        stub = registration_grpc.RegistrationStub(channel)
        info = stub.GetInfo(registration_pb2.InfoRequest(), timeout=5)
        assert (info.type, info.name, info.endpoint) == ("DRAPlugin", DRIVER, d.dra_socket)
        assert list(info.supported_versions) == ["v1.DRAPlugin"]
        stub.NotifyRegistrationStatus(registration_pb2.RegistrationStatus(plugin_registered=False,
                                                                          error="version skew"), timeout=5)
        assert not d.registration.registered.is_set() and d.registration.last_error == "version skew"
        stub.NotifyRegistrationStatus(registration_pb2.RegistrationStatus(plugin_registered=True), timeout=5)
        assert d.registration.registered.is_set()


def test_stopping_removes_the_sockets_so_the_kubelet_deregisters(driver):
    d = driver({})
    d.stop()
    assert not os.path.exists(d.registration_socket) and not os.path.exists(d.dra_socket)


def test_the_health_stream_sends_every_device_at_once_and_again_on_a_change(tmp_path):
    """DRAResourceHealth over the driver's real socket, as the kubelet reads it."""
    import grpc

    from draplugin.healthstream import HealthStream
    from draplugin.registration import PluginServer, RegistrationService
    from tessera.kubeletapi import DRA_HEALTH_SERVICE_V1, DRA_SERVICE_V1, dra_grpc, drahealth_grpc, drahealth_pb2

    out: dict[int, str] = {}
    stream = HealthStream("node-1", lambda: {"gpu-5": 5, "gpu-7-mig-1g-10gb-0": 7}, out.get, resend_s=60)
    socket = str(tmp_path / "dra.sock")
    registration = RegistrationService("gpu.tessera.io", socket, (DRA_SERVICE_V1, DRA_HEALTH_SERVICE_V1))
    server = PluginServer(dra_grpc.DRAPluginServicer(), registration, socket, str(tmp_path / "reg.sock"), stream)
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            updates = drahealth_grpc.DRAResourceHealthStub(channel).NodeWatchResources(
                drahealth_pb2.NodeWatchResourcesRequest(), timeout=30)
            first = next(updates)
            assert {(d.device.pool_name, d.device.device_name, d.health) for d in first.devices} == {
                ("node-1", "gpu-5", drahealth_pb2.HEALTHY), ("node-1", "gpu-7-mig-1g-10gb-0", drahealth_pb2.HEALTHY)}
            out[7] = "fatal Xid 79"
            stream.notify()
            second = {d.device.device_name: d for d in next(updates).devices}
            assert second["gpu-7-mig-1g-10gb-0"].health == drahealth_pb2.UNHEALTHY
            assert second["gpu-7-mig-1g-10gb-0"].message == "fatal Xid 79"
            assert second["gpu-5"].health == drahealth_pb2.HEALTHY and second["gpu-5"].health_check_timeout_seconds > 10
            updates.cancel()
    finally:
        stream.stop()
        server.stop()
