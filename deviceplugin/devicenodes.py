"""How devices reach a container: device nodes (``/dev/nvidia<minor>`` and the control nodes) or CDI names.

A GPU's node is named by its device minor number, which NVML reports apart from its index
(``nvmlDeviceGetMinorNumber``; the kernel numbers GPUs in the order it probed them, NVML in PCI
order): NVIDIA's device plugin does the same. A MIG device also needs its GPU instance's and
compute instance's capability nodes, ``/dev/nvidia-caps/nvidia-cap<N>`` (see
:mod:`tessera.migcaps`), as NVIDIA's plugin passes them.

CDI names follow the spec NVIDIA's container toolkit generates (``nvidia-ctk cdi generate``, index
naming): ``nvidia.com/gpu=<gpu index>`` for a GPU, ``nvidia.com/gpu=<gpu index>:<mig index>`` for a
MIG device (the MIG index is the instance's position on its GPU, as ``nvidia-smi -L`` lists them).
On a node without the real device files (the fake node) the DeviceSpecs are returned all the same.
"""

from __future__ import annotations

from deviceplugin.rm import Device, RequestError
from tessera.hostdevices import CONTROL_NODES
from tessera.migcaps import MIG_MINORS_PATH, capability_device

CDI_KIND = "nvidia.com/gpu"


def _nodes_of(device: Device) -> list[str]:
    if device.gpu_minor is None:
        raise RequestError(f"GPU {device.gpu_index} ({device.gpu_uuid}): NVML gives no device minor number, so its "
                           "device node /dev/nvidia<minor> is unknown")
    gpu = f"/dev/nvidia{device.gpu_minor}"
    if device.mig is None:
        return [gpu]
    if device.mig.capability_minors is None:
        mig = device.mig
        raise RequestError(f"MIG device {mig.uuid} on GPU {device.gpu_index}: {MIG_MINORS_PATH} lists no capability "
                           f"for gpu{device.gpu_minor}/gi{mig.gpu_instance_id}/ci{mig.compute_instance_id}, so its "
                           "/dev/nvidia-caps nodes are unknown")
    return [gpu, *(capability_device(minor) for minor in device.mig.capability_minors)]


def device_paths(devices: tuple[Device, ...]) -> list[str]:
    """The GPUs' device nodes (with MIG capability nodes), then the control nodes every CUDA process opens.

    RequestError where a node cannot be named (no minor number, no capability entry).
    """
    nodes = dict.fromkeys(path for device in devices for path in _nodes_of(device))
    return list(nodes) + list(CONTROL_NODES)


def cdi_names(devices: tuple[Device, ...], mig_index: dict[str, int]) -> list[str]:
    """CDI device names for ``devices`` (``mig_index``: MIG UUID -> its index on its GPU)."""
    names = []
    for d in devices:
        name = f"{CDI_KIND}={d.gpu_index}:{mig_index[d.mig.uuid]}" if d.mig else f"{CDI_KIND}={d.gpu_index}"
        if name not in names:
            names.append(name)
    return names
