"""The dry run's stand-ins: a fake one-GPU H100 node for Tessera's fake NVML, a stand-in ``nvidia-smi``,
device nodes made under the work folder, a ``/proc/devices`` naming their majors, the fake MPS control
daemon and fake CUDA clients. Nothing here touches a GPU or the host's ``/dev``."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from gpucheck.section import CheckContext
from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL
from tessera.nvml import FAKE_ENV

__all__ = ["DEFAULT_NODE", "FakeMachine", "prepare"]

REPO = Path(__file__).resolve().parents[1]
# One H100 as on the lent machine; minor number 3 (not its index 0), so a layer that names the
# device node by index instead of minor number fails the dry run as it would a real machine.
DEFAULT_NODE = """\
# The GPU check's dry run: one H100 whose device minor is not its index.
node: gpucheck-h100
driver_version: "550.54.15"
cuda_version: "12.4"
minor_numbers: [3]
gpus:
  - model: H100-SXM5-80GB
"""
NVIDIA_MAJOR, UVM_MAJOR, CAPS_MAJOR = 195, 235, 236  # nvidia-uvm's and nvidia-caps' majors are dynamic


@dataclass(frozen=True)
class FakeMachine:
    """What the dry run put in place."""

    description: Path
    smi: Path
    device_root: Path | None  # None where device nodes could not be made (not root)
    proc_devices: Path
    sysfs_root: Path  # bus/pci/devices/<bus>/numa_node of the fake's GPUs, as the kernel writes them


def _description(work: Path, fake_node: str | None) -> Path:
    folder = work / "fake-node"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "node.yaml"
    if fake_node:
        from tessera.fakenvml import resolve_node_description

        shutil.copy(resolve_node_description(fake_node), target)
    else:
        target.write_text(DEFAULT_NODE)
    return target


def _smi(work: Path) -> Path:
    path = work / "bin" / "nvidia-smi"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gpucheck.fakesmi "$@"\n')
    path.chmod(0o755)
    return path


def _capability_minors() -> list[int]:
    """The MIG capability minors of the fake node's instances (the fake driver's mig-minors table)."""
    from tessera.nvml import Nvml

    with Nvml() as nvml:
        return sorted({c for g in nvml.read_gpus() for m in g.mig_instances for c in (m.capability_minors or ())})


def _device_nodes(work: Path, minors: list[int]) -> Path | None:
    root = work / "devroot"
    dev = root / "dev"
    (dev / "nvidia-caps").mkdir(parents=True, exist_ok=True)
    nodes = {f"nvidia{m}": (NVIDIA_MAJOR, m) for m in minors}
    nodes.update({f"nvidia-caps/nvidia-cap{c}": (CAPS_MAJOR, c) for c in _capability_minors()})
    nodes.update({"nvidiactl": (NVIDIA_MAJOR, 255), "nvidia-uvm": (UVM_MAJOR, 0), "nvidia-uvm-tools": (UVM_MAJOR, 1)})
    try:
        for name, (major, minor) in nodes.items():
            os.mknod(dev / name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except (PermissionError, OSError):
        return None
    return root


def _sysfs(work: Path, gpus) -> Path:
    """The kernel's numa_node files of the fake's GPUs (sysfs names PCI devices with a 4-digit domain, lower
    case: /sys/bus/pci/devices/0000:07:00.0/numa_node)."""
    root = work / "sys"
    for gpu in gpus:
        folder = root / "bus/pci/devices" / gpu.pci_bus_id[4:].lower()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "numa_node").write_text(f"{gpu.numa_node}\n")
    return root


def prepare(ctx: CheckContext, fake_node: str | None) -> FakeMachine:
    """Put the stand-ins in place under ``ctx.work`` and point this process (and its children) at them."""
    from tessera.fakenvml import load_description

    description = _description(ctx.work, fake_node)
    os.environ[FAKE_ENV] = str(description)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    gpus = load_description(description).gpus
    minors = [g.minor for g in gpus]
    proc_devices = ctx.work / "proc-devices"
    proc_devices.write_text(f"Character devices:\n  1 mem\n{NVIDIA_MAJOR} nvidia-frontend\n{UVM_MAJOR} nvidia-uvm\n"
                            f"{CAPS_MAJOR} nvidia-caps\n\n"
                            "Block devices:\n  8 sd\n")
    return FakeMachine(description, _smi(ctx.work), _device_nodes(ctx.work, minors), proc_devices,
                       _sysfs(ctx.work, gpus))


def fake_mps_control() -> str:
    """The fake ``nvidia-cuda-mps-control`` (simcluster's)."""
    return FAKE_MPS_CONTROL


def fake_cuda_client() -> list[str]:
    """The argv prefix of the fake CUDA client (same protocol as gpucheck/cudaclient.py)."""
    return [sys.executable, "-m", "gpucheck.fakecuda"]
