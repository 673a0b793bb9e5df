"""The resource manager: which devices each resource has, their health, which IDs to prefer.

Knows nothing of gRPC; :mod:`deviceplugin.server` asks it for every decision.
"""

from deviceplugin.rm.devices import CORES_PER_GPU, Device, gpu_devices, node_devices
from tessera.gpuhealth import HealthTracker
from deviceplugin.rm.node import NodeDevices
from deviceplugin.rm.requests import Request, RequestError

__all__ = ["CORES_PER_GPU", "Device", "HealthTracker", "NodeDevices", "Request", "RequestError",
           "gpu_devices", "node_devices"]
