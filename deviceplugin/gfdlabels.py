"""NVIDIA GPU Feature Discovery's node labels, as far as NVML and the GPU modes tell them.

Written after GFD's own rules (``internal/lm/`` of NVIDIA/k8s-device-plugin: ``resource.go``,
``nvml.go``, ``mig-strategy.go``), so node selectors written for GFD keep matching:

- ``nvidia.com/gpu.{product,count,memory,replicas,sharing-strategy,family,compute.major,compute.minor}``
  for the node's most common GPU model; ``product`` is NVML's name sanitised as GFD does it.
- ``nvidia.com/cuda.driver.{major,minor,rev}``, ``cuda.runtime.{major,minor}`` (GFD's deprecated
  names, still written by it) and ``cuda.driver-version.{major,minor,revision,full}``,
  ``cuda.runtime-version.{major,minor,full}`` (its current ones).
- ``nvidia.com/mig.capable``, ``mig.strategy``, ``mps.capable``.
- per MIG profile present, ``nvidia.com/mig-<profile>.{product,count,replicas,sharing-strategy,memory,
  multiprocessors,slices.gi,slices.ci,engines.copy,engines.decoder,engines.encoder,engines.jpeg,engines.ofa}``.

Where Tessera differs from GFD, and why:

- ``mig.strategy`` is always ``mixed``: Tessera serves MIG instances only as ``nvidia.com/mig-<profile>``
  (what GFD's ``mixed`` describes). GFD's ``single`` labels (``gpu.product: <model>-MIG-<profile>``)
  would tell selectors that ``nvidia.com/gpu`` is a MIG instance, which on Tessera it never is.
- ``gpu.product`` has no ``-SHARED`` suffix: GFD adds it only when ``nvidia.com/gpu`` itself is
  replicated and not renamed. Tessera's shared units always have their own names
  (``nvidia.com/gpu.shared``, ``nvidia.com/mps-core``), GFD's renamed case, and ``nvidia.com/gpu`` is
  always one whole GPU; so a model selector matches time-sliced and MPS nodes alike, as the
  extender's model constraint expects.
- ``gpu.replicas`` of an MPS GPU is 100: ``nvidia.com/mps-core`` units per GPU, the most pods that
  can share it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tessera import RESOURCE_PREFIX as PREFIX, mig_resource_name
from tessera.gpu import GpuInfo, MigInstance

MPS_UNITS_PER_GPU = 100
_NOT_SANITARY = re.compile(r"[^A-Za-z0-9\-_. ]")
# GFD's sharing-strategy names per Tessera mode of a whole GPU.
_STRATEGY = {"timeslice": "time-slicing", "mps": "mps", "exclusive": "none"}


@dataclass(frozen=True)
class NodeFacts:
    """What the labels are made of: the GPUs as NVML read them, their modes, and the driver."""

    gpus: tuple[GpuInfo, ...]
    modes: dict[int, str]  # GPU index -> Tessera mode
    timeslice_replicas: int
    driver_version: str = ""  # e.g. 550.54.15; empty: unknown
    cuda_version: str = ""  # the newest CUDA the driver runs, e.g. 12.4; empty: unknown


def sanitise(name: str) -> str:
    """A GPU or MIG name as GFD puts it in a label value: odd characters dropped, blanks as one ``-``."""
    return "-".join(_NOT_SANITARY.sub("", name).split())


def arch_family(major: int, minor: int) -> str:
    """GFD's ``gpu.family`` for a CUDA compute capability."""
    families = {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper",
                10: "blackwell", 12: "blackwell", 13: "rubin"}
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    return families.get(major, "undefined")


def gfd_labels(facts: NodeFacts) -> dict[str, str]:
    """Every GFD label this node's facts decide (empty on a node without readable GPUs)."""
    gpus = list(facts.gpus)
    if not gpus:
        return {}
    labels = {**_version_labels(facts.driver_version, facts.cuda_version),
              f"{PREFIX}mig.capable": str(any(g.mig_capable for g in gpus)).lower(),
              f"{PREFIX}mps.capable": str(any(facts.modes.get(g.index) == "mps" for g in gpus)).lower()}
    if any(g.mig_capable for g in gpus):
        labels[f"{PREFIX}mig.strategy"] = "mixed"
    labels.update(_gpu_labels(gpus, facts))
    labels.update(_mig_labels(gpus))
    return labels


def _is_mig(gpu: GpuInfo, modes: dict[int, str]) -> bool:
    return gpu.mig_enabled or modes.get(gpu.index) == "mig"


def _gpu_labels(gpus: list[GpuInfo], facts: NodeFacts) -> dict[str, str]:
    """``nvidia.com/gpu.*`` of the node's most common model (GFD labels one model; a node rarely has two)."""
    model = Counter(g.name for g in gpus).most_common(1)[0][0]
    same = [g for g in gpus if g.name == model]
    whole = [g for g in same if not _is_mig(g, facts.modes)]
    replicas, strategy = 0, "none"  # GFD's labels of a MIG-enabled card: sharing does not apply
    if whole:
        mode = Counter(facts.modes.get(g.index, "exclusive") for g in whole).most_common(1)[0][0]
        replicas = {"timeslice": facts.timeslice_replicas, "mps": MPS_UNITS_PER_GPU}.get(mode, 1)
        strategy = _STRATEGY.get(mode, "none") if replicas > 1 else "none"
    out = {"product": sanitise(model), "count": str(len(same)), "replicas": str(replicas),
           "sharing-strategy": strategy}
    memory = min(g.memory_total_mib for g in same)
    if memory:
        out["memory"] = str(memory)
    cc = next((g.compute_capability for g in same if g.compute_capability), None)
    if cc and cc[0]:
        out |= {"family": arch_family(*cc), "compute.major": str(cc[0]), "compute.minor": str(cc[1])}
    return {f"{PREFIX}gpu.{k}": v for k, v in out.items()}


def _mig_labels(gpus: list[GpuInfo]) -> dict[str, str]:
    """``nvidia.com/mig-<profile>.*`` per profile present, as GFD's ``mixed`` strategy writes them."""
    first: dict[str, tuple[GpuInfo, MigInstance]] = {}
    counts: Counter[str] = Counter()
    for gpu in gpus:
        for mig in gpu.mig_instances:
            resource = mig_resource_name(mig.profile)
            first.setdefault(resource, (gpu, mig))
            counts[resource] += 1
    labels: dict[str, str] = {}
    for resource, (gpu, mig) in sorted(first.items()):
        profile = resource.removeprefix(f"{PREFIX}mig-")
        out = {"product": f"{sanitise(gpu.name)}-MIG-{sanitise(profile)}", "count": str(counts[resource]),
               "replicas": "1", "sharing-strategy": "none", "memory": str(mig.memory_mib),
               "multiprocessors": str(mig.sm_count), "slices.gi": str(mig.slices),
               "slices.ci": str(mig.compute_slices if mig.compute_slices is not None else mig.slices)}
        out |= {f"engines.{name}": str(n) for name, n in mig.engines}
        labels |= {f"{resource}.{k}": v for k, v in out.items()}
    return labels


def _version_labels(driver: str, cuda: str) -> dict[str, str]:
    """The driver and CUDA version labels, GFD's deprecated names beside its current ones."""
    labels: dict[str, str] = {}
    parts = driver.split(".")
    if 2 <= len(parts) <= 3:
        major, minor, rev = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        labels |= {"cuda.driver.major": major, "cuda.driver.minor": minor, "cuda.driver.rev": rev,
                   "cuda.driver-version.major": major, "cuda.driver-version.minor": minor,
                   "cuda.driver-version.revision": rev, "cuda.driver-version.full": driver}
    cuda_parts = cuda.split(".")
    if len(cuda_parts) == 2 and all(p.isdigit() for p in cuda_parts):
        major, minor = cuda_parts
        labels |= {"cuda.runtime.major": major, "cuda.runtime.minor": minor,
                   "cuda.runtime-version.major": major, "cuda.runtime-version.minor": minor,
                   "cuda.runtime-version.full": f"{major}.{minor}"}
    return {f"{PREFIX}{k}": v for k, v in labels.items()}
