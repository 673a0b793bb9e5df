"""The kubelet's gRPC APIs as Python: device-plugin v1beta1 and pod-resources v1.

The generated modules live under ``tessera.kubeletapi.deviceplugin.v1beta1`` and
``tessera.kubeletapi.podresources.v1`` (regenerate with ``python -m tessera.kubeletapi.generate``).
This package gives them short names::

    from tessera.kubeletapi import deviceplugin_pb2, deviceplugin_grpc
    from tessera.kubeletapi import podresources_pb2, podresources_grpc

The aliases load on first use, so importing this package for its constants pulls in neither
grpc nor protobuf.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tessera.kubeletapi.deviceplugin.v1beta1 import api_pb2 as deviceplugin_pb2
    from tessera.kubeletapi.deviceplugin.v1beta1 import api_pb2_grpc as deviceplugin_grpc
    from tessera.kubeletapi.podresources.v1 import api_pb2 as podresources_pb2
    from tessera.kubeletapi.podresources.v1 import api_pb2_grpc as podresources_grpc

#: The device-plugin API version a plugin sends in RegisterRequest.version (upstream ``Version``).
API_VERSION = "v1beta1"
#: The kubelet's registration socket, inside the device-plugin directory (upstream ``KubeletSocket``).
KUBELET_SOCKET_NAME = "kubelet.sock"
#: Where the kubelet and the device plugins put their sockets (upstream ``DevicePluginPath``).
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
#: The kubelet's pod-resources socket (upstream ``podresources`` default endpoint).
POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
#: Device health values in ListAndWatch (upstream ``Healthy`` / ``Unhealthy``).
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"

_ALIASES: dict[str, str] = {
    "deviceplugin_pb2": "tessera.kubeletapi.deviceplugin.v1beta1.api_pb2",
    "deviceplugin_grpc": "tessera.kubeletapi.deviceplugin.v1beta1.api_pb2_grpc",
    "podresources_pb2": "tessera.kubeletapi.podresources.v1.api_pb2",
    "podresources_grpc": "tessera.kubeletapi.podresources.v1.api_pb2_grpc",
}

__all__ = [
    "API_VERSION",
    "DEVICE_PLUGIN_DIR",
    "HEALTHY",
    "KUBELET_SOCKET_NAME",
    "POD_RESOURCES_SOCKET",
    "UNHEALTHY",
    *_ALIASES,
]


def __getattr__(name: str) -> Any:
    """Load a generated module the first time its short name is used."""
    target = _ALIASES.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(target)
    globals()[name] = module
    return module
