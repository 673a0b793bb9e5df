"""Which IDs to prefer: the best-linked set of whole GPUs, and the tightest GPU for a share.

Pairs of GPUs are scored by how they are linked, best first: NVLink (more links score more), then
PCIe by the closest point of the PCIe tree the two share (:attr:`tessera.gpu.GpuInfo.pcie_peers`):
one board, one PCIe switch, several switches, one host bridge, then the same CPU socket / NUMA
node, then across sockets. Where NVML did not tell the PCIe level, the NUMA nodes decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations
from math import comb

from tessera.gpu import GpuInfo

NVLINK_BASE = 1000
SAME_NUMA = 10
PCIE_SCORES = {"internal": 50, "single": 40, "multiple": 30, "hostbridge": 20, "node": SAME_NUMA, "system": 0}
EXHAUSTIVE_LIMIT = 5000


def pair_score(a: GpuInfo, b: GpuInfo) -> int:
    """How well two GPUs are linked (higher is better)."""
    for peer in a.nvlink_peers:
        if peer.uuid == b.uuid:
            return NVLINK_BASE + peer.links
    level = a.pcie_level(b.uuid) or b.pcie_level(a.uuid)
    if level is not None:
        return PCIE_SCORES[level]
    if a.numa_node is not None and a.numa_node == b.numa_node:
        return SAME_NUMA
    return 0


def set_score(gpus: Iterable[GpuInfo]) -> int:
    """The sum of pair scores of a set."""
    return sum(pair_score(a, b) for a, b in combinations(list(gpus), 2))


def best_gpu_set(candidates: list[GpuInfo], size: int, must: list[GpuInfo] = ()) -> list[GpuInfo]:
    """``size`` GPUs from ``candidates`` containing ``must``, with the best link score.

    Exhaustive while the number of sets is small, greedy (add the GPU best linked to the set so far)
    beyond. Ties go to the lowest indexes. Returns fewer than ``size`` only when there are fewer.
    """
    must = [g for g in must]
    rest = sorted((g for g in candidates if g.uuid not in {m.uuid for m in must}), key=lambda g: g.index)
    need = size - len(must)
    if need <= 0:
        return must[:size]
    if need >= len(rest):
        return must + rest
    if comb(len(rest), need) <= EXHAUSTIVE_LIMIT:
        best = max(combinations(rest, need), key=lambda extra: (set_score(must + list(extra)),
                                                                [-g.index for g in extra]))
        return must + list(best)
    chosen = list(must)
    pool = list(rest)
    while len(chosen) < size:
        pick = max(pool, key=lambda g: (sum(pair_score(g, c) for c in chosen), -g.index))
        chosen.append(pick)
        pool.remove(pick)
    return chosen


def tightest(free: dict[str, int], need: int, other_free: dict[str, int] | None = None,
             other_need: int = 0) -> str | None:
    """The GPU (UUID) with the least room that still fits ``need`` (and ``other_need`` in the other
    dimension): bin-packing keeps whole GPUs free for bigger requests."""
    fitting = [u for u, n in free.items() if n >= need
               and (other_free is None or other_free.get(u, 0) >= other_need)]
    if not fitting:
        return None
    return min(fitting, key=lambda u: (free[u] - need, (other_free or {}).get(u, 0) - other_need, u))
