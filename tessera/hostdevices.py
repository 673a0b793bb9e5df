"""The device nodes every CUDA process opens, and where a device node is on the host: shared by the
two daemons that hand GPUs to containers (the device plugin's Allocate, the DRA driver's CDI specs)."""

from __future__ import annotations

import os

CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


def host_device_path(device_root: str, path: str) -> str:
    """The host path of a device node: ``/dev/nvidia0`` under ``device_root`` (``/`` on a real node)."""
    return path if device_root in ("", "/") else os.path.join(device_root, path.lstrip("/"))
