"""The Tessera device plugin: advertises GPUs, MIG instances, MPS shares and time-sliced replicas to the kubelet.

Run as ``tessera-device-plugin`` (``deviceplugin.main``). Public names: :class:`DevicePluginDaemon` (the
plugin in this process), :class:`NodeDevices` (the resource manager: devices, modes, health, which IDs to
prefer; no gRPC) and :class:`Allocator` (its answers to GetPreferredAllocation and Allocate).
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "DevicePluginDaemon": "deviceplugin.daemon", "NodeDevices": "deviceplugin.rm",
    "Allocator": "deviceplugin.allocator",
})
