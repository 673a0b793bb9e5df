"""The kubeletapi package: constants as upstream, generated modules behind short names, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import tessera.kubeletapi as kubeletapi


def test_constants_match_the_kubelets():
    assert kubeletapi.API_VERSION == "v1beta1"
    assert kubeletapi.KUBELET_SOCKET_NAME == "kubelet.sock"
    assert kubeletapi.DEVICE_PLUGIN_DIR == "/var/lib/kubelet/device-plugins"
    assert (kubeletapi.HEALTHY, kubeletapi.UNHEALTHY) == ("Healthy", "Unhealthy")


def test_short_names_are_the_generated_modules():
    from tessera.kubeletapi.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc
    from tessera.kubeletapi.podresources.v1 import api_pb2 as pr_pb2, api_pb2_grpc as pr_grpc

    assert kubeletapi.deviceplugin_pb2 is api_pb2
    assert kubeletapi.deviceplugin_grpc is api_pb2_grpc
    assert kubeletapi.podresources_pb2 is pr_pb2
    assert kubeletapi.podresources_grpc is pr_grpc


def test_importing_the_package_for_its_constants_loads_neither_grpc_nor_protobuf():
    code = "import sys, tessera.kubeletapi; print(sorted(m for m in ('grpc', 'google.protobuf') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
