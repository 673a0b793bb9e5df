"""NVLink wiring of a fake node: which remote end each link of each GPU reaches.

``all-to-all`` on an NVSwitch board (HGX A100, HGX H100) sends every link to one of the
switches, as on the real boards, so every GPU reaches every other through the fabric. On
boards without switches it splits the links evenly between the peers; eight V100s get the
DGX-1 hybrid cube-mesh (the real ``nvidia-smi topo -m`` of a DGX-1V). An explicit list wires
GPU pairs directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.fakenvml.catalog import GpuModel

NVSWITCHES = {"A100-SXM4-40GB": 6, "A100-SXM4-80GB": 6, "H100-SXM5-80GB": 4}

# DGX-1V: (gpu a, gpu b, links); every GPU uses all six of its links.
_CUBE_MESH = (
    (0, 1, 1), (0, 2, 1), (0, 3, 2), (0, 4, 2), (1, 2, 2), (1, 3, 1), (1, 5, 2), (2, 3, 2),
    (2, 6, 1), (3, 7, 1), (4, 5, 1), (4, 6, 1), (4, 7, 2), (5, 6, 2), (5, 7, 1), (6, 7, 2),
)


@dataclass(frozen=True)
class LinkEnd:
    """The remote end of one NVLink link: another GPU (by index) or an NVSwitch (by number)."""

    kind: str  # "gpu" or "switch"
    index: int


def switch_bus_id(number: int) -> str:
    """The PCI bus id of NVSwitch ``number`` on a fake board."""
    return f"00000000:{0xC4 + number:02X}:00.0"


def build_links(models: list[GpuModel], spec: Any) -> tuple[tuple[LinkEnd, ...], ...]:
    """Per GPU, the remote end of each active link. ``spec`` is the description's ``nvlink`` value."""
    n = len(models)
    same_sxm = len({m.key for m in models}) == 1 and models[0].nvlinks > 0
    if spec is None:
        spec = "all-to-all" if same_sxm else "none"
    if spec == "none":
        return tuple(() for _ in models)
    if spec == "all-to-all":
        if not same_sxm:
            raise ValueError("all-to-all needs GPUs of one NVLink (SXM) model; use 'none' or a list of pairs")
        return _all_to_all(models[0], n)
    if spec == "hybrid-cube-mesh":
        return _pairs(models, [{"gpus": [a, b], "links": k} for a, b, k in _CUBE_MESH])
    if isinstance(spec, list):
        return _pairs(models, spec)
    raise ValueError(f"{spec!r} is not 'all-to-all', 'none', 'hybrid-cube-mesh' or a list of {{gpus: [a, b], links: n}}")


def _all_to_all(model: GpuModel, n: int) -> tuple[tuple[LinkEnd, ...], ...]:
    if n == 1:
        return ((),)
    switches = NVSWITCHES.get(model.key)
    if switches:
        ends = tuple(LinkEnd("switch", link % switches) for link in range(model.nvlinks))
        return tuple(ends for _ in range(n))
    if n == 8 and model.nvlinks == 6:
        return build_links([model] * n, "hybrid-cube-mesh")
    per_pair = model.nvlinks // (n - 1)
    if per_pair == 0:
        raise ValueError(f"{model.key} has {model.nvlinks} links, too few to reach {n - 1} peers directly")
    return _pairs([model] * n, [{"gpus": [a, b], "links": per_pair} for a in range(n) for b in range(a + 1, n)])


def _pairs(models: list[GpuModel], pairs: list) -> tuple[tuple[LinkEnd, ...], ...]:
    ends: list[list[LinkEnd]] = [[] for _ in models]
    for k, pair in enumerate(pairs):
        if not isinstance(pair, dict) or set(pair) != {"gpus", "links"}:
            raise ValueError(f"[{k}]: {pair!r} is not {{gpus: [a, b], links: n}}")
        gpus, links = pair["gpus"], pair["links"]
        if (not isinstance(gpus, list) or len(gpus) != 2 or len(set(gpus)) != 2
                or not all(isinstance(g, int) and 0 <= g < len(models) for g in gpus)):
            raise ValueError(f"[{k}].gpus: {gpus!r} is not two different GPU indexes below {len(models)}")
        if not isinstance(links, int) or isinstance(links, bool) or links < 1:
            raise ValueError(f"[{k}].links: {links!r} is not a positive link count")
        a, b = gpus
        ends[a].extend([LinkEnd("gpu", b)] * links)
        ends[b].extend([LinkEnd("gpu", a)] * links)
    for i, (model, mine) in enumerate(zip(models, ends)):
        if len(mine) > model.nvlinks:
            raise ValueError(f"GPU {i} ({model.key}) would use {len(mine)} links, it has {model.nvlinks}")
    return tuple(tuple(e) for e in ends)


def build_switches(numa: list[int], spec: Any) -> tuple[int | None, ...]:
    """Per GPU, the PCIe switch it sits behind (None: its own). ``spec`` is the description's
    ``pcie_switches`` value: a list of GPU index groups, one per switch; by default GPUs 0-1, 2-3, ...
    share a switch where both are on one NUMA node (as on a DGX, or a 2U server of PCIe boards)."""
    n = len(numa)
    if spec is None:
        spec = [[a, a + 1] for a in range(0, n - 1, 2) if numa[a] == numa[a + 1]]
    if not isinstance(spec, list):
        raise ValueError(f"{spec!r} is not a list of GPU index groups like [[0, 1], [2, 3]]")
    switch: list[int | None] = [None] * n
    for k, group in enumerate(spec):
        if (not isinstance(group, list) or not group
                or not all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < n for g in group)):
            raise ValueError(f"[{k}]: {group!r} is not a list of GPU indexes below {n}")
        for g in group:
            if switch[g] is not None:
                raise ValueError(f"[{k}]: GPU {g} is already behind switch {switch[g]}")
            if numa[g] != numa[group[0]]:
                raise ValueError(f"[{k}]: GPUs {group[0]} and {g} are on different NUMA nodes; one switch has one")
            switch[g] = k
    return tuple(switch)


def pcie_level(a: int, b: int, switches: tuple[int | None, ...], numa: list[int], sxm: bool) -> str:
    """The PCIe level GPUs ``a`` and ``b`` share, as a NVML_TOPOLOGY_* suffix. SXM boards put two
    levels of switches between a GPU pair (PXB on a DGX A100); PCIe boards one (PIX)."""
    if a == b:
        return "INTERNAL"
    mine, theirs = (switches[g] if g < len(switches) else None for g in (a, b))
    if mine is not None and mine == theirs:
        return "MULTIPLE" if sxm else "SINGLE"
    return "NODE" if numa[a] == numa[b] else "SYSTEM"
