"""Placement latency: filter + prioritize with the fragmentation policy on 1,000 and 5,000 synthetic
nodes of 8 MPS GPUs, partly occupied.

    .venv/bin/python bench/placement_bench.py [--sizes 1000,5000] [--pods 400]

Each step is what the extender does for one pod: ``filter_nodes`` over every node, ``prioritize`` over
those that fit, then the pod is bound on a top node (one node changes, as after a real bind). Timed:
filter + prioritize per pod (p50, p99, max), for the ``Fleet`` path (results per request shape kept,
only changed nodes recomputed) and for a plain list of nodes (each node's own cache only); and the
first call for a shape never seen (every node computed).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extender.placement.fleet import Fleet  # noqa: E402
from extender.placement.fragmentation import FragmentationModel, shape_of  # noqa: E402
from extender.placement.nodestate import NodeState  # noqa: E402
from extender.placement.grants import ContainerPlacement, Placement  # noqa: E402
from extender.placement import PolicyContext, choose_gpus, filter_nodes, prioritize  # noqa: E402
from tessera.podrequest import KIND_MPS, KIND_MPS_WHOLE, GpuAsk, simple_request  # noqa: E402
from tessera.inventory import GpuInventory, NodeInventory  # noqa: E402
from tessera.table import render_table  # noqa: E402

GIB = 1 << 30
# (weight, core or whole-GPU count, cpu millicores): a workload like the trace's, mostly shares.
MIX = [(30, 25, 4000), (20, 50, 8000), (10, 10, 2000), (15, 100, 12000), (10, 75, 8000), (8, 30, 4000),
       (4, -2, 24000), (2, -4, 48000), (1, -8, 96000)]


def request(core: int, cpu: int):
    ask = GpuAsk(KIND_MPS_WHOLE, count=-core) if core < 0 else GpuAsk(KIND_MPS, core=core)
    return simple_request(ask, cpu_milli=cpu, memory_bytes=cpu // 1000 * 4 * GIB)


def synthetic_nodes(n: int, rng: random.Random) -> list[NodeState]:
    nodes = []
    for i in range(n):
        name = f"node-{i:05d}"
        inv = NodeInventory(node=name, gpus=tuple(
            GpuInventory(index=g, uuid=f"GPU-{i:05d}-{g}", model="A100-SXM4-40GB", memory_mib=40 * 1024,
                         sm_count=108, mode="mps") for g in range(8)))
        node = NodeState.from_inventory(inv, 96000, 768 * GIB, labels={"nvidia.com/gpu.product": "A100-SXM4-40GB"})
        for g in range(8):  # partly occupied: each GPU idle, partly or fully held
            core = rng.choice([0, 0, 0, 10, 25, 30, 50, 60, 75, 100])
            if core:
                grants = node.make_grants("mps", (g,), core=core, memory_gib=core * 40 // 100)
                node.assume(Placement(f"{name}-old-{g}", name, (ContainerPlacement("c", grants),), cpu_milli=core * 80,
                                      memory_bytes=core * GIB // 4))
        nodes.append(node)
    return nodes


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(size: int, pods: int, fleet_mode: bool, seed: int = 1) -> dict:
    rng = random.Random(seed)
    nodes = synthetic_nodes(size, rng)
    requests = [(w, request(core, cpu)) for w, core, cpu in MIX]
    model = FragmentationModel([(shape_of(r), w) for w, r in requests])
    ctx = PolicyContext(shapes=model, rng=random.Random(seed))
    target = Fleet(nodes) if fleet_mode else nodes
    by_name = {n.name: n for n in nodes}
    weights = [w for w, _ in requests]
    cold: list[float] = []
    warm: list[float] = []
    seen: set[str] = set()
    for k in range(pods):
        req = rng.choices([r for _, r in requests], weights)[0]
        began = time.perf_counter()
        fits = filter_nodes(req, target).fits
        if fits:
            scores = prioritize(req, target, "fragmentation", ctx, names=fits) if fleet_mode else \
                prioritize(req, [by_name[n] for n in fits], "fragmentation", ctx)
        took = (time.perf_counter() - began) * 1000
        (warm if req.key in seen else cold).append(took)
        seen.add(req.key)
        if fits:
            top = max(s for _, s in scores)
            node = by_name[rng.choice([n for n, s in scores if s == top])]
            p = choose_gpus(req, node, "fragmentation", ctx)
            node.assume(Placement(f"bench-{k}", node.name, p.containers, p.cpu_milli, p.memory_bytes))
    return {"warm": warm, "cold": cold}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--pods", type=int, default=400)
    args = p.parse_args(argv)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for fleet_mode in (True, False):
            print(f"{size} nodes, {'fleet' if fleet_mode else 'list'}: {args.pods} pods ...", file=sys.stderr, flush=True)
            r = run(size, args.pods, fleet_mode)
            w = r["warm"]
            rows.append([f"{size:,}", "Fleet" if fleet_mode else "list", len(w), f"{statistics.median(w):.2f}",
                         f"{percentile(w, 0.99):.2f}", f"{max(w):.2f}",
                         f"{statistics.median(r['cold']):.1f}" if r["cold"] else "-"])
    print("filter + prioritize (fragmentation policy), milliseconds per pod; 8 MPS GPUs per node")
    print(render_table(["nodes", "path", "pods", "p50 ms", "p99 ms", "max ms", "first of a shape ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
