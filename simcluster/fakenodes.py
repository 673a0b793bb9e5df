"""Fake-GPU nodes: each simulated node gets its own fake-NVML node description file.

The node's device plugin (and exporter) run with ``TESSERA_FAKE_NVML=<that file>``, so the
production NVML code reads the node's GPUs, and faults are injected per node.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from simcluster.cluster import NodeSpec
from tessera.fakenvml import load_description


def node_description(spec: NodeSpec) -> dict:
    """The fake-NVML description document of a simulated node."""
    gpu: dict = {"model": spec.model, "count": spec.gpus, "mode": spec.mode}
    if spec.mig:
        gpu["mig"] = list(spec.mig)
    return {"node": spec.name, "gpus": [gpu]}


def write_node_description(spec: NodeSpec, path: Path) -> Path:
    """Write the node's description and check it loads (a bad MIG layout fails here, by name)."""
    path.write_text(yaml.safe_dump(node_description(spec), sort_keys=False))
    load_description(path)
    return path
