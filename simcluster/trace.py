"""The Alibaba GPU trace (cluster-trace-gpu-v2023) as placement input: its nodes as ``NodeState`` with
every GPU in MPS mode, its tasks as ``PodRequest``.

Task conversion (see ../shared/traces/README.md): ``num_gpu == 1`` with ``gpu_milli < 1000`` is a share,
``mps-core = ceil(gpu_milli / 10)`` with proportional memory (``floor(core/100 x card GiB)``, at least
1); otherwise ``mps-core = 100 x num_gpu`` (whole GPUs with all their memory); ``num_gpu == 0`` is a
CPU-only task; ``gpu_spec`` (models separated by ``|``) constrains the GPU model.

Pod lists (``POD_LISTS``): the trace's own files ``openb_pod_list_<name>.csv`` (default, gpushare40,
multigpu20, gpuspec10), and the model-heavy lists built from the default list by
``simcluster.modelheavy`` (``modelheavy30``, ``modelheavy50``, or any ``modelheavy<P>[s<SEED>]``; the
recipe is in that module's docstring).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from simcluster import modelheavy
from simcluster.cluster import load_trace_nodes
from tessera.inventory import GpuInventory, NodeInventory

from extender.placement.fragmentation import FragmentationModel, shape_of
from extender.placement.nodestate import NodeState
from tessera.podrequest import KIND_MPS, KIND_MPS_WHOLE, GpuAsk, ModelConstraint, PodRequest, simple_request

NODE_LIST = "openb_node_list_gpu_node.csv"
TRACE_POD_LISTS = ("default", "gpushare40", "multigpu20", "gpuspec10")
POD_LISTS = TRACE_POD_LISTS + modelheavy.MODELHEAVY_LISTS
MIB = 1 << 20


def default_trace_dir() -> Path:
    """``<repo>/../shared/traces/alibaba-gpu-v2023``."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "traces" / "alibaba-gpu-v2023"


@dataclass(frozen=True)
class TraceTask:
    """One task of a pod list: its request and the GPU capacity it asks, in cores."""

    name: str
    request: PodRequest
    gpu_cores: int


def task_request(name: str, cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int,
                 gpu_spec: str = "") -> PodRequest:
    """A trace task as a one-container pod request."""
    ask: GpuAsk | None = None
    if num_gpu == 1 and 0 < gpu_milli < 1000:
        ask = GpuAsk(KIND_MPS, core=-(-gpu_milli // 10), memory_gib=None)
    elif num_gpu == 1:
        ask = GpuAsk(KIND_MPS, core=100, memory_gib=None)  # one whole card: all its memory
    elif num_gpu > 1:
        ask = GpuAsk(KIND_MPS_WHOLE, count=num_gpu)
    models = None
    spec = [m for m in gpu_spec.split("|") if m]
    if spec and ask is not None:
        models = ModelConstraint(((frozenset(spec), frozenset()),))
    return simple_request(ask, cpu_milli=cpu_milli, memory_bytes=memory_mib * MIB, models=models, name=name)


def read_pod_list(trace_dir: str | Path, pod_list: str) -> list[dict[str, str]]:
    """The rows (column -> text) of ``openb_pod_list_<pod_list>.csv``."""
    with open(Path(trace_dir) / f"openb_pod_list_{pod_list}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def pod_rows(trace_dir: str | Path, pod_list: str) -> list[dict[str, str]]:
    """The rows of a pod list: a file of the trace, or a model-heavy list built from the trace's
    default and gpuspec10 lists (``simcluster.modelheavy``)."""
    parsed = modelheavy.parse_name(pod_list)
    if parsed is None:
        return read_pod_list(trace_dir, pod_list)
    share, seed = parsed
    return modelheavy.build(read_pod_list(trace_dir, modelheavy.BASE_LIST),
                            read_pod_list(trace_dir, modelheavy.SPEC_LIST), share, seed)


def load_tasks(trace_dir: str | Path, pod_list: str = "default", host_memory: bool = True) -> list[TraceTask]:
    """The tasks of a pod list (``pod_rows``); ``host_memory=False`` drops their memory requests (FGD's
    simulator fits CPU and GPU only)."""
    tasks = []
    for row in pod_rows(trace_dir, pod_list):
        memory_mib = int(row["memory_mib"]) if host_memory else 0
        req = task_request(row["name"], int(row["cpu_milli"]), memory_mib, int(row["num_gpu"]),
                           int(row["gpu_milli"]), row.get("gpu_spec") or "")
        tasks.append(TraceTask(row["name"], req, req.gpu_cores))
    return tasks


def load_nodes(trace_dir: str | Path) -> list[NodeState]:
    """The trace's GPU nodes, every GPU in MPS mode, nothing held."""
    out = []
    for spec in load_trace_nodes(Path(trace_dir) / NODE_LIST, mode="mps").nodes:
        gib = spec.gpu_memory_gib or 16
        inv = NodeInventory(node=spec.name, gpus=tuple(
            GpuInventory(index=i, uuid=f"GPU-{spec.name}-{i}", model=spec.model, memory_mib=gib * 1024,
                         sm_count=0, mode="mps") for i in range(spec.gpus)))
        out.append(NodeState.from_inventory(inv, spec.cpu_milli, spec.memory_mib * MIB, labels=spec.labels))
    return out


def workload_model(tasks: list[TraceTask]) -> FragmentationModel:
    """Typical shapes as FGD takes them: every task of the list, weighted by how often it occurs."""
    counts: Counter = Counter()
    for t in tasks:
        shape = shape_of(t.request)
        if shape is not None:
            counts[shape] += 1
    return FragmentationModel(counts.items())
