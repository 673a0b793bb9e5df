"""bench/compare.py at a tiny size (20 nodes, 3 scheduling cycles, 3 Allocates, 2 hook runs): the one
table holds a row for each path with numbers for Tessera and its floor, and the ratio of the two; the
extender's floor answers with as many bytes as Tessera did, and gpushare-scheduler-extender (where
scripts/build-gpushare.sh has built it) answers every cycle's filter. No timing is asserted: on a
shared machine only the presence and the arithmetic of the figures are facts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402 - bench/, added to the path above
import extender_bench  # noqa: E402
import extender_floor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

NUMBER = r"\d+\.\d\d"  # milliseconds, to 0.01
RATIO = r"\d+(\.\d+)?(e-\d+)?"  # three significant digits

pytestmark = pytest.mark.slow


def table_rows(text: str) -> dict[str, list[str]]:
    """The printed table's rows by path: the cells after the path, split on runs of two spaces."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("----"))
    rows = {}
    for line in lines[rule + 1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows.setdefault(cells[0], []).append(cells[1:])
    return rows


def test_the_table_has_each_path_with_its_floor_and_ratio(capsys):
    assert compare.main(["--sizes", "20", "--pods", "3", "--rounds", "3", "--runs", "2", "--no-peers"]) == 0
    out = capsys.readouterr().out
    assert "cores" in out.splitlines()[0] and "UTC" in out.splitlines()[0]
    rows = table_rows(out)
    expected = ["extender filter, 20 nodes", "extender prioritize, 20 nodes", "extender filter+prioritize, 20 nodes",
                "Allocate whole GPU (nvidia.com/gpu: 1)", "Allocate time-slicing (nvidia.com/gpu.shared: 1)",
                "Allocate MPS share (nvidia.com/mps-core: 50)"]
    if os.geteuid() == 0:
        expected += ["hook (release), granted container", "hook (release), unrelated container"]
    assert set(expected) <= set(rows)
    assert "note: gpushare-scheduler-extender not run: not asked (--no-peers)" in out
    assert re.search(r"note: 20 nodes, filter answer bytes \(median\): Tessera [\d,]+, floor [\d,]+", out)
    for path in expected:
        for cells in rows[path]:
            tessera_p50, tessera_p99, floor, floor_p50, floor_p99, ratio_p50, ratio_p99, goal, met = cells
            assert all(re.fullmatch(NUMBER, v) for v in (tessera_p50, tessera_p99, floor_p50, floor_p99)), cells
            assert all(re.fullmatch(RATIO, v) for v in (ratio_p50, ratio_p99)), (path, cells)
            assert floor
            # The ratio is Tessera's figure over the floor's (each printed to 0.01 ms).
            assert float(ratio_p50) == pytest.approx(float(tessera_p50) / float(floor_p50), rel=0.05, abs=0.02)
            if path.startswith(("Allocate", "hook (release), granted container")) and goal != "-":
                assert met in ("yes", "NO")


def built_gpushare() -> Path | None:
    """gpushare-scheduler-extender where scripts/build-gpushare.sh has built it (this test builds nothing)."""
    found = subprocess.run(["bash", str(REPO / "scripts" / "build-gpushare.sh"), "--find"], capture_output=True,
                           text=True)
    return Path(found.stdout.strip()) / "gpushare-sche-extender" if found.returncode == 0 else None


def test_the_floor_answers_tessera_s_size_and_gpushare_every_filter(tmp_path):
    proc, url = extender_floor.spawn_floor()
    beside = compare.Beside(url, built_gpushare(), tmp_path)
    try:
        run = extender_bench.measure_latency(20, 3, tmp_path, False, beside, beside.prepare)
    finally:
        beside.close()
        proc.terminate()
        proc.wait(10)
    for verb in ("filter", "prioritize"):
        assert run.tessera.answer_bytes[verb] and beside.floor.answer_bytes[verb]
        # Prioritize scores 0..10 in both; only a score's digits may differ.
        for ours, floors in zip(run.tessera.answer_bytes[verb], beside.floor.answer_bytes[verb]):
            assert abs(ours - floors) <= 20, (verb, ours, floors)
    if beside.gpushare is not None:
        assert len(beside.peer.round_trip[compare.gpushare_peer.FILTER_PATH]) == 3
