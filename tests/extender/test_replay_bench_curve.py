"""bench/replay_bench.py judges a policy on the whole curve: its table shows the allocated share at
each level and the mean over them, and says where the first policy's lead is smallest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from simcluster.replay import ReplayResult, Sample

_spec = importlib.util.spec_from_file_location(
    "replay_bench", Path(__file__).resolve().parents[2] / "bench" / "replay_bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _run(policy: str, seed: int, shares: dict[float, float]) -> ReplayResult:
    return ReplayResult(policy, seed, [Sample(lv, lv, a, 0.0, 1.5, 0, 0) for lv, a in shares.items()], 2.0)


def test_table_shows_every_level_and_the_curve_mean_over_seeds():
    levels = [80.0, 100.0, 130.0]
    runs = [_run("fragmentation", 1, {80.0: 80.0, 100.0: 95.0, 130.0: 96.0}),
            _run("fragmentation", 2, {80.0: 80.0, 100.0: 94.0, 130.0: 97.0}),
            _run("fgd", 1, {80.0: 80.0, 100.0: 96.0, 130.0: 95.0}),
            _run("fgd", 2, {80.0: 80.0, 100.0: 96.0, 130.0: 95.0})]
    text = bench.table(runs, ["fragmentation", "fgd"], levels)
    header, _, frag_row, fgd_row = text.splitlines()
    assert header.split()[1:4] == ["80%", "100%", "130%"]
    # seed 1: (80+95+96)/3 = 90.33, seed 2: (80+94+97)/3 = 90.33; at 100 %: (95+94)/2 = 94.5
    assert frag_row.split()[1:6] == ["80.00", "94.50", "96.50", "90.33", "90.33-90.33"]
    assert fgd_row.split()[1:6] == ["80.00", "96.00", "95.00", "90.33", "90.33-90.33"]
    (lead,) = bench.leads(runs, ["fragmentation", "fgd"], levels)
    assert lead == "fragmentation vs fgd: +0.00 points on the curve mean, worst -1.50 at 100%"


def test_levels_default_to_every_five_percent_from_80_to_130():
    assert bench.DEFAULT_LEVELS == (80, 85, 90, 95, 100, 105, 110, 115, 120, 125, 130)
    assert bench.parse_levels("130,80,100") == [80.0, 100.0, 130.0]
