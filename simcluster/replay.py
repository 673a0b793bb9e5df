"""``tessera replay``: replay the Alibaba GPU trace through the extender's own placement calls.

As the trace README describes: tasks are drawn from a pod list with replacement (seeded), placed one by
one with no departures, until the GPU capacity the arrived tasks asked for reaches the highest level
(130 % by default) of the cluster's capacity. Each task goes through ``filter_nodes``, then
``prioritize`` (the scheduler's pick: a node of the top score, ties at random, seeded), then
``choose_gpus``, and the node assumes the placement; a task that fits nowhere is dropped. Every policy
sees the same sequence of tasks. At every 5 % of arrived load (and at each ``--levels``) it records the
share of GPU capacity allocated, the unallocated GPUs, and the fragmentation (idle capacity that the
typical tasks of the list cannot use, FGD's measure with the list's own shape frequencies).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel
from extender.placement.nodestate import NodeState
from extender.placement import PolicyContext, choose_gpus, filter_nodes, prioritize
from tessera.extras import missing_pictures
from simcluster.trace import POD_LISTS, TraceTask, default_trace_dir, load_nodes, load_tasks, workload_model

REPLAY_POLICIES = ("random", "binpack", "spread", "best-fit", "fgd", "fragmentation")


@dataclass
class Sample:
    """The cluster at one level of arrived load (percent of GPU capacity)."""

    level: float
    arrived: float
    allocated: float      # percent of GPU capacity held
    unallocated_gpus: float
    fragment_gpus: float  # idle capacity typical tasks cannot use, in GPUs
    tasks: int
    dropped: int


@dataclass
class ReplayResult:
    policy: str
    seed: int
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def at(self, level: float) -> Sample:
        return next(s for s in self.samples if s.level == level)


def sample_levels(levels: list[float], step: float = 5.0) -> list[float]:
    """Every ``step`` percent up to the highest level, and the levels themselves."""
    top = max(levels)
    points = {round(step * i, 6) for i in range(1, int(top // step) + 1)}
    return sorted(points | set(levels))


def _draws(tasks: list[TraceTask], seed: int, draw: str):
    """Tasks in arrival order: drawn with replacement (the README's method), or ``shuffle``d without
    replacement as FGD's simulator does (a fresh shuffle of the list each time it runs out)."""
    rng = random.Random(seed)
    if draw == "replacement":
        n = len(tasks)
        while True:
            yield tasks[rng.randrange(n)]
    order = list(tasks)
    while True:
        rng.shuffle(order)
        yield from order


def replay(nodes: list[NodeState], tasks: list[TraceTask], policy: str, seed: int, levels: list[float],
           model: FragmentationModel, draw: str = "replacement") -> ReplayResult:
    """Place tasks drawn from ``tasks`` on ``nodes`` (changed in place) until each level of arrived load
    is reached; ``model`` gives the typical shapes (for the fragmentation policy and the measure)."""
    started = time.perf_counter()
    arrivals = _draws(tasks, seed, draw)
    ties = random.Random(seed * 7919 + 1)
    ctx = PolicyContext(shapes=model, rng=random.Random(seed * 104729 + 2))
    fleet = Fleet(nodes)
    capacity = 100 * sum(len(n.gpus) for n in nodes)
    points = sample_levels(levels)
    result = ReplayResult(policy, seed)
    arrived = allocated = count = dropped = 0
    next_point = 0
    while next_point < len(points):
        task = next(arrivals)
        count += 1
        arrived += task.gpu_cores
        request = task.request
        fits = filter_nodes(request, fleet).fits
        if fits:
            scores = prioritize(request, fleet, policy, ctx, names=fits)
            top = max(s for _, s in scores)
            best = [n for n, s in scores if s == top]
            node = fleet[best[0] if len(best) == 1 else ties.choice(best)]
            placement = choose_gpus(request, node, policy, ctx)
            node.assume(replace(placement, pod=f"{task.name}#{count}"))
            allocated += placement.gpu_cores
        else:
            dropped += 1
        while next_point < len(points) and arrived * 100 >= points[next_point] * capacity:
            frag = sum(model.node_fragment_cores(n) for n in nodes)
            result.samples.append(Sample(points[next_point], 100 * arrived / capacity, 100 * allocated / capacity,
                                         (capacity - allocated) / 100, frag / 100, count, dropped))
            next_point += 1
    result.seconds = time.perf_counter() - started
    return result


def run_replays(trace_dir: Path, pod_list: str, policies: list[str], seeds: list[int], levels: list[float],
                progress=None, draw: str = "replacement", host_memory: bool = True) -> list[ReplayResult]:
    """Every policy x seed on fresh copies of the trace's nodes."""
    tasks = load_tasks(trace_dir, pod_list, host_memory)
    model = workload_model(tasks)
    fresh = load_nodes(trace_dir)
    results = []
    for seed in seeds:
        for policy in policies:
            res = replay([n.copy() for n in fresh], tasks, policy, seed, levels, model, draw)
            results.append(res)
            if progress:
                progress(res)
    return results


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def level_table(results: list[ReplayResult], policies: list[str], levels: list[float]) -> str:
    """Per policy and level: allocated share, unallocated GPUs, fragmentation (means over seeds)."""
    from tessera.table import render_table

    rows = []
    for policy in policies:
        runs = [r for r in results if r.policy == policy]
        for level in levels:
            s = [r.at(level) for r in runs]
            idle = _mean([x.unallocated_gpus for x in s])
            frag = _mean([x.fragment_gpus for x in s])
            rows.append([policy, f"{level:g}%", f"{_mean([x.allocated for x in s]):.2f}%",
                         f"{min(x.allocated for x in s):.2f}-{max(x.allocated for x in s):.2f}",
                         f"{idle:.1f}", f"{frag:.1f}", f"{100 * frag / idle if idle else 0:.1f}%",
                         f"{_mean([x.dropped for x in s]):.0f}", f"{_mean([r.seconds for r in runs]):.1f}s"])
    return render_table(["policy", "arrived", "allocated", "range", "unalloc GPUs", "frag GPUs", "frag/idle",
                         "dropped", "time/run"], rows)


def curve_table(results: list[ReplayResult], policies: list[str]) -> str:
    """Allocated share at every sampled level, one column per policy (means over seeds)."""
    from tessera.table import render_table

    levels = [s.level for s in results[0].samples]
    rows = []
    for level in levels:
        row = [f"{level:g}%"]
        for policy in policies:
            row.append(f"{_mean([r.at(level).allocated for r in results if r.policy == policy]):.2f}")
        rows.append(row)
    return render_table(["arrived"] + policies, rows)


def draw_png(results: list[ReplayResult], policies: list[str], path: str, title: str) -> None:
    """Allocated share against arrived load, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    levels = [s.level for s in results[0].samples]
    for policy in policies:
        runs = [r for r in results if r.policy == policy]
        ax.plot(levels, [_mean([r.at(lv).allocated for r in runs]) for lv in levels], marker=".", label=policy)
    ax.plot(levels, [min(lv, 100) for lv in levels], color="grey", linestyle=":", linewidth=1, label="ideal")
    ax.set_xlabel("arrived GPU request (% of capacity)")
    ax.set_ylabel("GPU capacity allocated (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace-dir", type=Path, default=None,
                   help="folder of the Alibaba trace (default: <repo>/../shared/traces/alibaba-gpu-v2023)")
    p.add_argument("--pod-list", choices=POD_LISTS, default="default", help="which pod list to draw from")
    p.add_argument("--seeds", default="42", help="comma-separated seeds (default 42)")
    p.add_argument("--policies", default=",".join(REPLAY_POLICIES),
                   help=f"comma-separated policies (default {','.join(REPLAY_POLICIES)})")
    p.add_argument("--levels", default="100,130", help="arrived load levels to report, percent (default 100,130)")
    p.add_argument("--draw", choices=("replacement", "shuffle"), default="replacement",
                   help="draw tasks with replacement (the trace README's method, default) or shuffle the list "
                        "without replacement as FGD's simulator does")
    p.add_argument("--ignore-host-memory", action="store_true",
                   help="fit tasks by CPU and GPU only, as FGD's simulator does (default: CPU and memory, "
                        "as kube-scheduler does)")
    p.add_argument("--curve", action="store_true", help="also print the allocated share at every 5 %% of load")
    p.add_argument("--png", default=None, help="draw allocated share vs arrived load per policy to this PNG")
    return p


def replay_main(argv: list[str] | None = None) -> int:
    """Entry point of ``tessera replay``; returns the exit status."""
    from extender.placement import POLICIES

    args = build_parser().parse_args(argv)
    trace_dir = args.trace_dir or default_trace_dir()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        levels = [float(v) for v in args.levels.split(",") if v.strip()]
    except ValueError as exc:
        print(f"tessera replay: {exc}", file=sys.stderr)
        return 2
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies or not seeds or not levels or min(levels) <= 0:
        print(f"tessera replay: policies must be among {', '.join(POLICIES)}; seeds and positive levels needed",
              file=sys.stderr)
        return 2
    if args.png and missing_pictures():
        print(f"tessera replay: --png: {missing_pictures()}", file=sys.stderr)
        return 2
    if not (trace_dir / "openb_node_list_gpu_node.csv").is_file():
        print(f"tessera replay: no trace in {trace_dir} (use --trace-dir)", file=sys.stderr)
        return 2

    def progress(res: ReplayResult) -> None:
        print(f"  {res.policy} seed {res.seed}: {res.at(max(levels)).allocated:.2f}% allocated at "
              f"{max(levels):g}% arrived ({res.seconds:.1f}s)", file=sys.stderr)

    started = time.perf_counter()
    results = run_replays(trace_dir, args.pod_list, policies, seeds, levels, progress, args.draw,
                          not args.ignore_host_memory)
    print(f"Replay of {args.pod_list} pod list, seeds {','.join(map(str, seeds))}, draws {args.draw}"
          f"{', host memory ignored' if args.ignore_host_memory else ''}: "
          f"GPU capacity allocated (mean over seeds) ({time.perf_counter() - started:.1f}s in all)")
    print(level_table(results, policies, levels))
    if args.curve:
        print()
        print(curve_table(results, policies))
    if args.png:
        draw_png(results, policies, args.png, f"Alibaba trace, {args.pod_list} pod list")
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(replay_main())
