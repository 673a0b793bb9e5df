"""bench/dra_placement_bench.py's core on a tiny trace sample (3 nodes, 10 pods), all three arms, through the
real kube-scheduler: every pod is either bound or found unschedulable and deleted, the GPU capacity read
back from the schedulers' records (the extender's signed assignments, the DRA claims' allocations)
equals what the bound pods asked, no GPU holds more than 100 cores, and each bound DRA pod's claim is
allocated on its own node with the devices and capacity it asked. The plain DRA arm's pods stay with the
default scheduler; the scored arm's are routed to tessera-scheduler by the webhook.

Its own cluster without kubelets (light nodes kept Ready by kube-controller-manager's grace period), as
the benchmark runs; no real node.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from realtier import binaries_or_skip

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dra_placement_bench as bench  # noqa: E402 - bench/, added to the path above


def _sample():
    trace = bench.find_trace_dir()
    if not (trace / bench.NODE_LIST).is_file():
        pytest.skip(f"no Alibaba trace in {trace}")
    specs = bench.sample_nodes(trace, 3, seed=3)
    tasks = bench.arrivals(bench.load_tasks(trace, "default"), 3, sum(s.gpus for s in specs), 300)
    asks = bench.asks_for(specs, tasks)[:10]
    assert any(a.core for a in asks) and any(a.whole for a in asks)   # shares and whole GPUs both
    return specs, asks


def test_every_arm_accounts_for_what_the_bound_pods_asked():
    import realcluster

    specs, asks = _sample()
    by_name = {a.name: a for a in asks}
    with realcluster.running(binaries=binaries_or_skip(), kubelets=False, extender_flags=("--dra-scoring",),
                             extra_flags={"kube-controller-manager": bench.NODE_GRACE}) as cluster:
        results = {arm: bench.run_arm(cluster, arm, specs, asks, timeout_s=60)
                   for arm in (bench.EXTENDER, bench.DRA, bench.DRA_SCORED)}
        left = {arm: {p.metadata.name for p in cluster.core_v1().list_namespaced_pod(f"bench-{arm}").items}
                for arm in results}

    for arm, r in results.items():
        assert r.bound + r.dropped == len(asks), arm
        assert r.bound > 0, arm
        bound = {name for names in r.pods_by_node.values() for name in names}
        assert left[arm] == bound, arm                                   # unschedulable pods were deleted
        assert r.allocated_gpus == pytest.approx(r.asked_gpus), arm     # records = asks
        assert r.allocated_gpus == pytest.approx(sum(by_name[n].gpus for n in bound)), arm
        assert not r.overcommitted, arm
        assert all(node.startswith(f"{arm}-") for node in r.pods_by_node), arm

    assert set(results[bench.EXTENDER].schedulers) == {"tessera-scheduler"}
    assert set(results[bench.DRA].schedulers) == {"default-scheduler"}        # namespace not opted in
    assert set(results[bench.DRA_SCORED].schedulers) == {"tessera-scheduler"}  # routed for Tessera's node scores
    for arm in bench.DRA_ARMS:
        _claims_match_their_pods(results[arm], by_name)


def _claims_match_their_pods(dra, by_name) -> None:
    node_of = {name: node for node, names in dra.pods_by_node.items() for name in names}
    claimed = {}
    for claim in dra.claims:
        (holder,) = claim["status"]["reservedFor"]
        claimed[holder["name"]] = claim
    assert set(claimed) == {n for n in node_of if by_name[n].gpus}    # one allocated claim per bound GPU pod
    for name, claim in claimed.items():
        ask, results_ = by_name[name], claim["status"]["allocation"]["devices"]["results"]
        assert {r["pool"] for r in results_} == {node_of[name]}
        assert all(r["driver"] == bench.DRIVER_NAME for r in results_)
        if ask.whole:
            assert len({r["device"] for r in results_}) == ask.whole
            assert all(r["consumedCapacity"]["cores"] == "100" for r in results_)
        else:
            (only,) = results_
            assert only["consumedCapacity"] == {"cores": str(ask.core), "memory": f"{ask.memory_gib}Gi"}
