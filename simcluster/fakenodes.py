"""Fake-GPU nodes: each simulated node gets its own fake-NVML node description file.

The node's device plugin (and exporter) run with ``TESSERA_FAKE_NVML=<that file>``, so the
production NVML code reads the node's GPUs, and faults are injected per node.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from simcluster.cluster import NodeSpec
from tessera.fakenvml import load_description
from tessera.fakenvml.driverfiles import device_nodes


def node_description(spec: NodeSpec) -> dict:
    """The fake-NVML description document of a simulated node."""
    gpu: dict = {"model": spec.model, "count": spec.gpus, "mode": spec.mode}
    if spec.mig:
        gpu["mig"] = list(spec.mig)
    doc: dict = {"node": spec.name, "gpus": [gpu]}
    if spec.minor_numbers:
        doc["minor_numbers"] = list(spec.minor_numbers)
    return doc


def write_node_description(spec: NodeSpec, path: Path) -> Path:
    """Write the node's description and check it loads (a bad MIG layout fails here, by name)."""
    path.write_text(yaml.safe_dump(node_description(spec), sort_keys=False))
    load_description(path)
    return path


def make_device_nodes(root: Path, description: Path) -> bool:
    """The node's device nodes under ``root`` (its ``/``), as the driver would make them in /dev:
    ``nvidia<minor>`` per GPU (195:minor; the minor is not always the index), ``nvidiactl``,
    ``nvidia-uvm``/``nvidia-uvm-tools`` and the MIG capability nodes ``nvidia-caps/nvidia-cap<N>``
    (:func:`tessera.fakenvml.driverfiles.device_nodes`). With no driver behind them, opening a
    permitted one fails with ENXIO. Needs root (mknod); elsewhere the node has none and containers
    are not run for real anyway."""
    if os.geteuid() != 0:
        return False
    for path, major, minor in device_nodes(load_description(description)):
        node = root / path.lstrip("/")
        node.parent.mkdir(parents=True, exist_ok=True)
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    return True
