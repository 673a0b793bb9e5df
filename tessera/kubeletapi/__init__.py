"""The kubelet's gRPC APIs as Python: device-plugin v1beta1, pod-resources v1, DRA v1, DRA resource health v1
and plugin registration v1.

The generated modules live under ``tessera.kubeletapi.deviceplugin.v1beta1`` and
``tessera.kubeletapi.podresources.v1`` (regenerate with ``python -m tessera.kubeletapi.generate``).
This package gives them short names::

    from tessera.kubeletapi import deviceplugin_pb2, deviceplugin_grpc
    from tessera.kubeletapi import podresources_pb2, podresources_grpc
    from tessera.kubeletapi import dra_pb2, dra_grpc, drahealth_pb2, drahealth_grpc
    from tessera.kubeletapi import registration_pb2, registration_grpc

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
    from tessera.kubeletapi.dra.v1 import api_pb2 as dra_pb2
    from tessera.kubeletapi.dra.v1 import api_pb2_grpc as dra_grpc
    from tessera.kubeletapi.drahealth.v1 import api_pb2 as drahealth_pb2
    from tessera.kubeletapi.drahealth.v1 import api_pb2_grpc as drahealth_grpc
    from tessera.kubeletapi.pluginregistration.v1 import api_pb2 as registration_pb2
    from tessera.kubeletapi.pluginregistration.v1 import api_pb2_grpc as registration_grpc

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
#: Where the kubelet watches for plugins' registration sockets (``<--root-dir>/plugins_registry``).
PLUGINS_REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
#: Where kubelet plugins keep their own sockets and state (``<--root-dir>/plugins``).
PLUGINS_DIR = "/var/lib/kubelet/plugins"
#: PluginInfo.type of a DRA driver (upstream ``pluginregistration.DRAPlugin``).
DRA_PLUGIN_TYPE = "DRAPlugin"
#: The DRA gRPC services a driver offers, as PluginInfo.supported_versions names them.
DRA_SERVICE_V1 = "v1.DRAPlugin"
#: The optional service a driver streams its devices' health to the kubelet with (KEP 4680).
DRA_HEALTH_SERVICE_V1 = "v1.DRAResourceHealth"

_ALIASES: dict[str, str] = {
    "deviceplugin_pb2": "tessera.kubeletapi.deviceplugin.v1beta1.api_pb2",
    "deviceplugin_grpc": "tessera.kubeletapi.deviceplugin.v1beta1.api_pb2_grpc",
    "podresources_pb2": "tessera.kubeletapi.podresources.v1.api_pb2",
    "podresources_grpc": "tessera.kubeletapi.podresources.v1.api_pb2_grpc",
    "dra_pb2": "tessera.kubeletapi.dra.v1.api_pb2",
    "dra_grpc": "tessera.kubeletapi.dra.v1.api_pb2_grpc",
    "drahealth_pb2": "tessera.kubeletapi.drahealth.v1.api_pb2",
    "drahealth_grpc": "tessera.kubeletapi.drahealth.v1.api_pb2_grpc",
    "registration_pb2": "tessera.kubeletapi.pluginregistration.v1.api_pb2",
    "registration_grpc": "tessera.kubeletapi.pluginregistration.v1.api_pb2_grpc",
}

__all__ = [
    "API_VERSION",
    "DEVICE_PLUGIN_DIR",
    "DRA_HEALTH_SERVICE_V1",
    "DRA_PLUGIN_TYPE",
    "DRA_SERVICE_V1",
    "HEALTHY",
    "KUBELET_SOCKET_NAME",
    "PLUGINS_DIR",
    "PLUGINS_REGISTRY_DIR",
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
