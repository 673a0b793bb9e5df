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
