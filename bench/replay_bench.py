"""Replay benchmark: the Alibaba trace's four pod lists, three seeds each, every replay policy, through
the extender's own filter -> prioritize -> choose calls (see ``simcluster/replay.py``).

    .venv/bin/python bench/replay_bench.py [--seeds 42,43,44] [--pod-lists default,...] [--draw shuffle] [--ignore-host-memory]

Prints progress to stderr, then per pod list a table: GPU capacity allocated at 100 % and 130 % of
arrived load (mean over seeds, and the range), the fragmentation left at 130 % (idle capacity that
the list's typical tasks cannot use), and the median seconds one replay took. Takes several minutes.
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


def table(results: list[ReplayResult], policies: list[str]) -> str:
    rows = []
    for policy in policies:
        runs = [r for r in results if r.policy == policy]
        a100 = [r.at(100).allocated for r in runs]
        a130 = [r.at(130).allocated for r in runs]
        frag = [r.at(130).fragment_gpus for r in runs]
        rows.append([policy, f"{statistics.mean(a100):.2f}%", f"{min(a100):.2f}-{max(a100):.2f}",
                     f"{statistics.mean(a130):.2f}%", f"{min(a130):.2f}-{max(a130):.2f}",
                     f"{statistics.mean(frag):.1f}", f"{statistics.median(r.seconds for r in runs):.1f}s"])
    return render_table(["policy", "alloc@100%", "range", "alloc@130%", "range", "frag GPUs@130%", "median time"],
                        rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trace-dir", type=Path, default=default_trace_dir())
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--pod-lists", default=",".join(POD_LISTS))
    p.add_argument("--policies", default=",".join(REPLAY_POLICIES))
    p.add_argument("--draw", choices=("replacement", "shuffle"), default="replacement")
    p.add_argument("--ignore-host-memory", action="store_true", help="fit by CPU and GPU only, as FGD's simulator")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = args.policies.split(",")
    started = time.perf_counter()
    out = []
    for pod_list in args.pod_lists.split(","):
        def progress(res: ReplayResult, pod_list: str = pod_list) -> None:
            print(f"[{time.perf_counter() - started:6.0f}s] {pod_list} seed {res.seed} {res.policy}: "
                  f"{res.at(100).allocated:.2f}% / {res.at(130).allocated:.2f}% ({res.seconds:.1f}s)",
                  file=sys.stderr, flush=True)

        results = run_replays(args.trace_dir, pod_list, policies, seeds, [100, 130], progress, args.draw,
                               not args.ignore_host_memory)
        memory = ", host memory ignored" if args.ignore_host_memory else ""
        out.append(f"\n{pod_list} pod list, seeds {args.seeds}, draws {args.draw}{memory}\n{table(results, policies)}")
    print("Replay of the Alibaba GPU trace (GPU capacity allocated at 100 % / 130 % arrived load)")
    print("\n".join(out))
    print(f"\n{time.perf_counter() - started:.0f}s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
