"""Replay benchmark: the Alibaba trace's pod lists, three seeds each, every replay policy, through
the extender's own filter -> prioritize -> choose calls (see ``simcluster/replay.py``).

    .venv/bin/python bench/replay_bench.py [--seeds 42,43,44] [--pod-lists default,...] [--policies ...]
        [--levels 80,85,...,130] [--draw shuffle] [--ignore-host-memory]

Prints progress to stderr, then per pod list a table, one row per policy: the GPU capacity allocated
at each arrival level (``--levels``, percent of capacity arrived; default every 5 % from 80 to 130;
mean over seeds), the curve mean (the allocated share averaged over those levels, mean over seeds)
with its range across seeds, the fragmentation left at the highest level (idle capacity that the
list's typical tasks cannot use, in GPUs) and the median seconds one replay took. Under each table,
the first policy's lead over each other policy: on the curve mean, and at its worst level. Judge a
policy on the whole curve, not on one level.

Pod lists (``--pod-lists``, default all of ``simcluster.trace.POD_LISTS``): the trace's own
``default``, ``gpushare40``, ``multigpu20``, ``gpuspec10``, and the model-heavy lists that
``simcluster.modelheavy`` builds from the default list: ``modelheavy30`` / ``modelheavy50`` are the
default list resampled with replacement (seed 2023), each GPU task then carrying a ``gpu_spec`` with
probability 30 % / 50 %, the spec drawn from those the gpuspec10 list's own tasks of the same GPU
shape (share, one GPU, several) carry, with their frequencies there; ``modelheavy<P>s<SEED>`` builds
another share and seed. Nothing is written: every run builds them again, the same. Takes a few
minutes per list.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simcluster.replay import REPLAY_POLICIES, ReplayResult, run_replays  # noqa: E402
from simcluster.trace import POD_LISTS, default_trace_dir  # noqa: E402
from tessera.table import render_table  # noqa: E402

DEFAULT_LEVELS = tuple(range(80, 131, 5))


def curve_mean(result: ReplayResult, levels: list[float]) -> float:
    """The allocated share averaged over ``levels`` (one replay)."""
    return statistics.mean(result.at(level).allocated for level in levels)


def table(results: list[ReplayResult], policies: list[str], levels: list[float]) -> str:
    """One row per policy: allocated share at each level and the curve mean (means over seeds), the
    curve mean's range across seeds, the fragmentation at the top level, the median replay time."""
    top = max(levels)
    rows = []
    for policy in policies:
        runs = [r for r in results if r.policy == policy]
        means = [curve_mean(r, levels) for r in runs]
        frag = [r.at(top).fragment_gpus for r in runs]
        rows.append([policy] + [f"{statistics.mean(r.at(lv).allocated for r in runs):.2f}" for lv in levels]
                    + [f"{statistics.mean(means):.2f}", f"{min(means):.2f}-{max(means):.2f}",
                       f"{statistics.mean(frag):.1f}", f"{statistics.median(r.seconds for r in runs):.1f}s"])
    return render_table(["policy"] + [f"{lv:g}%" for lv in levels]
                        + ["mean", "mean range", f"frag GPUs@{top:g}%", "median time"], rows)


def leads(results: list[ReplayResult], policies: list[str], levels: list[float]) -> list[str]:
    """The first policy's lead over each other one, in points: on the curve mean, and at the level
    where it is smallest (means over seeds)."""
    def at(policy: str, level: float) -> float:
        return statistics.mean(r.at(level).allocated for r in results if r.policy == policy)

    first = policies[0]
    out = []
    for other in policies[1:]:
        diff = {lv: at(first, lv) - at(other, lv) for lv in levels}
        worst = min(levels, key=lambda lv: (diff[lv], lv))
        mean = statistics.mean(diff.values())
        out.append(f"{first} vs {other}: {mean:+.2f} points on the curve mean, worst {diff[worst]:+.2f} "
                   f"at {worst:g}%")
    return out


def parse_levels(text: str) -> list[float]:
    """``--levels``: comma-separated percents, positive."""
    levels = sorted({float(v) for v in text.split(",") if v.strip()})
    if not levels or levels[0] <= 0:
        raise argparse.ArgumentTypeError("levels must be positive percents")
    return levels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trace-dir", type=Path, default=default_trace_dir())
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--pod-lists", default=",".join(POD_LISTS))
    p.add_argument("--policies", default=",".join(REPLAY_POLICIES),
                   help="comma-separated; the first is the one the leads under each table are of")
    p.add_argument("--levels", type=parse_levels, default=list(DEFAULT_LEVELS),
                   help="arrival levels, percent of GPU capacity (default every 5 %% from 80 to 130)")
    p.add_argument("--draw", choices=("replacement", "shuffle"), default="replacement")
    p.add_argument("--ignore-host-memory", action="store_true", help="fit by CPU and GPU only, as FGD's simulator")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = args.policies.split(",")
    levels = args.levels
    top = max(levels)
    started = time.perf_counter()
    out = []
    for pod_list in args.pod_lists.split(","):
        def progress(res: ReplayResult, pod_list: str = pod_list) -> None:
            print(f"[{time.perf_counter() - started:6.0f}s] {pod_list} seed {res.seed} {res.policy}: "
                  f"curve mean {curve_mean(res, levels):.2f}%, {res.at(top).allocated:.2f}% at {top:g}% "
                  f"({res.seconds:.1f}s)", file=sys.stderr, flush=True)

        results = run_replays(args.trace_dir, pod_list, policies, seeds, levels, progress, args.draw,
                              not args.ignore_host_memory)
        memory = ", host memory ignored" if args.ignore_host_memory else ""
        out.append(f"\n{pod_list} pod list, seeds {args.seeds}, draws {args.draw}{memory}\n"
                   f"{table(results, policies, levels)}\n" + "\n".join(leads(results, policies, levels)))
    print("Replay of the Alibaba GPU trace: GPU capacity allocated (%) at each arrived load "
          f"(% of capacity), and its mean over {levels[0]:g}-{top:g}%")
    print("\n".join(out))
    print(f"\n{time.perf_counter() - started:.0f}s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
