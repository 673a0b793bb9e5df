"""bench/compare.py with HAMi's scheduler extender as a peer, where scripts/build-hami.sh has built it
(this test builds nothing; else it skips, saying so): on 20 light nodes and 3 scheduling cycles HAMi
answers each filter with one node it picked among the nodes asked, all of which have free GPUs, and
the quick table holds HAMi's rows beside Tessera's. No timing is asserted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402 - bench/, added to the path above
import extender_bench  # noqa: E402
import extender_floor  # noqa: E402
import hami_peer  # noqa: E402

pytestmark = pytest.mark.slow

NODES, CYCLES = 20, 3


@pytest.fixture(scope="module")
def hami() -> Path:
    binary = hami_peer.find()
    if binary is None:
        pytest.skip("HAMi's scheduler is not built here: bash scripts/build-hami.sh (TESSERA_HAMI_SRC, a git "
                    "repository of github.com/Project-HAMi/HAMi holding the commit pinned in tools/hami/go.mod)")
    return binary


def test_hami_picks_one_of_the_nodes_with_free_gpus_for_each_pod(hami, tmp_path):
    proc, url = extender_floor.spawn_floor()
    beside = compare.Beside(url, None, tmp_path, hami)
    try:
        run = extender_bench.measure_latency(NODES, CYCLES, tmp_path, False, beside, beside.prepare)
    finally:
        beside.close()
        proc.terminate()
        proc.wait(10)
    names = {f"node-{i:05d}" for i in range(NODES)}
    assert len(beside.hami.answers) == CYCLES
    for answer in beside.hami.answers:
        # Every node has 8 free cards for 3 pods: no error, no node failed, and HAMi's pick is one of them.
        assert not answer.get("Error"), answer
        assert not answer.get("FailedNodes"), answer
        assert len(answer["NodeNames"]) == 1 and answer["NodeNames"][0] in names, answer
    assert beside.hami.proc.poll() is not None  # stopped
    # Tessera answered the same cycles.
    assert len(run.tessera.round_trip["filter"]) == CYCLES


def test_hami_limits_ask_its_resources_for_shares_and_whole_gpus():
    share = hami_peer.hami_limits({"nvidia.com/mps-core": "25", "nvidia.com/mps-memory": "10", "cpu": "4000m"})
    assert share == {"cpu": "4000m", "nvidia.com/gpu": "1", "nvidia.com/gpumem": "10240", "nvidia.com/gpucores": "25"}
    whole = hami_peer.hami_limits({"nvidia.com/mps-core": "400", "cpu": "48000m"})
    assert whole == {"cpu": "48000m", "nvidia.com/gpu": "4", "nvidia.com/gpucores": "100"}


def test_the_quick_table_holds_hami_s_rows(hami, monkeypatch, capsys):
    monkeypatch.setattr(compare.gpushare_peer, "build", lambda: (None, "left out by this test"))
    monkeypatch.setattr(compare.hami_peer, "build", lambda: (hami, ""))
    assert compare.main(["--sizes", str(NODES), "--pods", str(CYCLES), "--only", "extender"]) == 0
    out = capsys.readouterr().out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    hami_rows = [cells for cells in rows if len(cells) > 3 and cells[3] == "HAMi filter"]
    assert {cells[0] for cells in hami_rows} == {f"extender filter, {NODES} nodes",
                                                 f"extender filter+prioritize, {NODES} nodes"}
    for path, tessera_p50, _, _, hami_p50, _, ratio_p50, *_ in hami_rows:
        assert float(ratio_p50) == pytest.approx(float(tessera_p50) / float(hami_p50), rel=0.05, abs=0.02), path
    assert "note: HAMi's scheduler: leader election" in out
    assert re.search(rf"note: {NODES} nodes, filter answer bytes \(median\): .*HAMi [\d,]+", out)


def test_a_peer_that_fails_to_start_leaves_no_api_server_behind(tmp_path):
    started = []

    def failing_prepare(bench, names):
        started.append(bench)
        raise TimeoutError("the peer did not answer")

    with pytest.raises(TimeoutError):
        extender_bench.measure_latency(NODES, CYCLES, tmp_path, False, None, failing_prepare)
    assert started and started[0].proc.poll() is not None
