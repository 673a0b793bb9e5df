"""Cluster descriptions: which simulated nodes exist, their GPUs, modes and labels.

A description is a YAML file::

    nodes:
      - name: a100-whole          # with replicas > 1: a100-whole-0, a100-whole-1, ...
        model: A100-SXM4-80GB     # a model of the fake NVML catalog
        gpus: 8
        mode: exclusive           # exclusive | mig | mps | timeslice (label tessera.io/gpu-mode)
        mig: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]   # per-GPU layout, mode mig only
        minor_numbers: [1, 0, 3, 2, 5, 4, 7, 6]      # /dev/nvidia<minor> per GPU index; default the index
        labels: {topology.kubernetes.io/zone: a}
        cpu: 96                   # cores
        memory_gib: 1024
        replicas: 1

The trace's node list (../shared/traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv) loads as a
description too, for the placement benchmarks.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tessera import GPU_MODES
from tessera.yamlfile import YamlFileError, parse_yaml_text, read_yaml_file

DEFAULT_CLUSTER = "default.yaml"

# GPU memory of the trace's models. G1-G3 are undisclosed in the trace; 32 GiB is an assumption
# that only scales mps-memory, which the replay requests in proportion to mps-core anyway.
TRACE_MODEL_MEMORY_GIB = {"T4": 15, "P100": 16, "V100M16": 16, "V100M32": 32, "A10": 24,
                          "G1": 32, "G2": 32, "G3": 32}


class ClusterDescriptionError(ValueError):
    """A cluster description that cannot be used; the message names the node and the key."""


@dataclass(frozen=True)
class NodeSpec:
    """One simulated GPU node."""

    name: str
    model: str
    gpus: int
    mode: str = "exclusive"
    mig: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    cpu_milli: int = 64000
    memory_mib: int = 256 * 1024
    gpu_memory_gib: int | None = None  # only for models outside the fake catalog (trace replay)
    minor_numbers: tuple[int, ...] = ()  # each GPU's device minor, by index; empty: the index (fake NVML checks)


@dataclass(frozen=True)
class ClusterDescription:
    nodes: tuple[NodeSpec, ...]
    source: str = ""

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(name)


_NODE_KEYS = {"name", "model", "gpus", "mode", "mig", "labels", "cpu", "memory_gib", "replicas", "minor_numbers"}


def _node_specs(raw: dict, where: str) -> list[NodeSpec]:
    if not isinstance(raw, dict):
        raise ClusterDescriptionError(f"{where}: expected a mapping")
    unknown = set(raw) - _NODE_KEYS
    if unknown:
        raise ClusterDescriptionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ClusterDescriptionError(f"{where}.name: a node needs a name")
    where = f"{where} ({name})"
    model = raw.get("model")
    if not isinstance(model, str):
        raise ClusterDescriptionError(f"{where}.model: a GPU model is required")
    gpus = raw.get("gpus", 8)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= 16:
        raise ClusterDescriptionError(f"{where}.gpus: {gpus!r} is not a GPU count from 1 to 16")
    mode = raw.get("mode", "exclusive")
    if mode not in GPU_MODES:
        raise ClusterDescriptionError(f"{where}.mode: {mode!r} is not one of {', '.join(GPU_MODES)}")
    mig = raw.get("mig", [])
    if not isinstance(mig, list) or not all(isinstance(p, str) for p in mig):
        raise ClusterDescriptionError(f"{where}.mig: expected a list of MIG profiles")
    if mig and mode != "mig":
        raise ClusterDescriptionError(f"{where}.mig: a MIG layout needs mode: mig")
    minors = raw.get("minor_numbers", [])
    if not isinstance(minors, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in minors):
        raise ClusterDescriptionError(f"{where}.minor_numbers: expected a list of device minor numbers")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict):
        raise ClusterDescriptionError(f"{where}.labels: expected a mapping")
    replicas = raw.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise ClusterDescriptionError(f"{where}.replicas: {replicas!r} is not a positive count")
    cpu = raw.get("cpu", 64)
    memory_gib = raw.get("memory_gib", 256)
    for key, value in (("cpu", cpu), ("memory_gib", memory_gib)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ClusterDescriptionError(f"{where}.{key}: {value!r} is not a positive number")
    names = [name] if replicas == 1 else [f"{name}-{i}" for i in range(replicas)]
    return [NodeSpec(name=n, model=model, gpus=gpus, mode=mode, mig=tuple(mig), minor_numbers=tuple(minors),
                     labels={str(k): str(v) for k, v in labels.items()},
                     cpu_milli=int(cpu * 1000), memory_mib=int(memory_gib * 1024)) for n in names]


def parse_cluster(doc: object, source: str = "cluster") -> ClusterDescription:
    """Validate a parsed description document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or not doc["nodes"]:
        raise ClusterDescriptionError(f"{source}: expected a mapping with a non-empty 'nodes' list")
    nodes: list[NodeSpec] = []
    for i, raw in enumerate(doc["nodes"]):
        nodes.extend(_node_specs(raw, f"{source}: nodes[{i}]"))
    names = [n.name for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ClusterDescriptionError(f"{source}: node names repeat: {', '.join(dupes)}")
    return ClusterDescription(nodes=tuple(nodes), source=source)


def load_cluster(path: str | Path | None = None) -> ClusterDescription:
    """Read a description file; ``None`` means the shipped default cluster."""
    source = f"simcluster/clusters/{DEFAULT_CLUSTER}" if path is None else str(path)
    try:
        if path is None:
            doc = parse_yaml_text(resources.files("simcluster").joinpath("clusters", DEFAULT_CLUSTER).read_text())
        else:
            doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise ClusterDescriptionError(f"{source}: {exc}") from None
    return parse_cluster(doc, source)


def load_trace_nodes(csv_path: str | Path, mode: str = "mps") -> ClusterDescription:
    """The trace's node list as a description: one node per row, all GPUs in ``mode`` (MPS for replay)."""
    nodes = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            model = row["model"]
            if model not in TRACE_MODEL_MEMORY_GIB:
                raise ClusterDescriptionError(f"{csv_path}: node {row['sn']}: unknown model {model!r}")
            nodes.append(NodeSpec(
                name=row["sn"], model=model, gpus=int(row["gpu"]), mode=mode,
                labels={"nvidia.com/gpu.product": model},
                cpu_milli=int(row["cpu_milli"]), memory_mib=int(row["memory_mib"]),
                gpu_memory_gib=TRACE_MODEL_MEMORY_GIB[model],
            ))
    return ClusterDescription(nodes=tuple(nodes), source=str(csv_path))
