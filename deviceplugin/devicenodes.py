"""How devices reach a container: device nodes (``/dev/nvidiaN`` and the control nodes) or CDI names.

CDI names follow the spec NVIDIA's container toolkit generates (``nvidia-ctk cdi generate``, index
naming): ``nvidia.com/gpu=<gpu index>`` for a GPU, ``nvidia.com/gpu=<gpu index>:<mig index>`` for a
MIG device (the MIG index is the instance's position on its GPU, as ``nvidia-smi -L`` lists them).
On a node without the real device files (the fake node) the DeviceSpecs are returned all the same.
"""

from __future__ import annotations

from deviceplugin.rm import Device

CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
CDI_KIND = "nvidia.com/gpu"


def device_paths(devices: tuple[Device, ...]) -> list[str]:
    """The GPUs' device nodes, then the control nodes every CUDA process opens."""
    gpus = list(dict.fromkeys(f"/dev/nvidia{d.gpu_index}" for d in devices))
    return gpus + list(CONTROL_NODES)


def cdi_names(devices: tuple[Device, ...], mig_index: dict[str, int]) -> list[str]:
    """CDI device names for ``devices`` (``mig_index``: MIG UUID -> its index on its GPU)."""
    names = []
    for d in devices:
        name = f"{CDI_KIND}={d.gpu_index}:{mig_index[d.mig.uuid]}" if d.mig else f"{CDI_KIND}={d.gpu_index}"
        if name not in names:
            names.append(name)
    return names
