"""On an H100 in MIG mode, each MIG instance's graphics activity and SM occupancy come from GPM."""

from __future__ import annotations

import pytest

from fakenode import samples, scrape, wait_until


def series(text: str, name: str, gpu: str) -> dict[str, tuple[dict[str, str], float]]:
    """The GPU's series of ``name`` by GPU_I_ID ('' for the whole GPU)."""
    return {labels.get("GPU_I_ID", ""): (labels, v) for labels, v in samples(text, name) if labels["gpu"] == gpu}


def test_each_mig_instance_gets_gr_engine_active_and_sm_occupancy_with_its_pod(fake_node, run_exporter):
    node = fake_node("h100-80gb-mig.yaml")
    big, mid, small = node.description.gpus[6].mig  # 4g.40gb, 2g.20gb, 1g.10gb
    node.devices.give("uid-inf", "infer", "team", "server", "nvidia.com/mig-4g.40gb", [big.uuid])
    node.faults.set_utilization(6, 70, 30, gpu_instance_id=big.gpu_instance_id, sm_occupancy_pct=45)
    node.faults.set_utilization(6, 35, gpu_instance_id=small.gpu_instance_id)
    url = run_exporter(node)
    gi = str(big.gpu_instance_id)
    text = wait_until(lambda: (t := scrape(url)) and gi in series(t, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "6") and t,
                      what="GPM figures of GPU 6's instances")
    active = series(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "6")
    occupancy = series(text, "DCGM_FI_PROF_SM_OCCUPANCY", "6")
    labels, value = active[gi]
    assert value == pytest.approx(0.70)
    assert (labels["GPU_I_PROFILE"], labels["pod"], labels["namespace"], labels["container"]) == (
        "4g.40gb", "infer", "team", "server")
    assert occupancy[gi][1] == pytest.approx(0.45)
    assert active[str(small.gpu_instance_id)][1] == pytest.approx(0.35)
    assert occupancy[str(small.gpu_instance_id)][1] == pytest.approx(0.35)
    assert active[str(mid.gpu_instance_id)][1] == 0
    assert active[""][1] == pytest.approx((4 * 0.70 + 0.35) / 7)  # the whole GPU: what the fake's GPM says
    assert samples(text, "DCGM_FI_DEV_GPU_UTIL") == []  # NVML's utilization rates still say nothing in MIG mode
    # every MIG instance of the node has its GPM series, and every GPU one for itself
    instances = sum(len(g.mig) for g in node.description.gpus)
    assert len(samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")) == instances + len(node.description.gpus)


def test_no_gpm_series_where_the_gpu_has_no_gpm(fake_node, run_exporter):
    node = fake_node("a100-80gb-mps.yaml")
    node.faults.set_utilization(0, 50)
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and samples(t, "tessera_exporter_collections_total")[0][1] >= 3
                      and t, what="three collections (GPM would answer from the second)")
    assert samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE") == []
    assert samples(text, "DCGM_FI_PROF_SM_OCCUPANCY") == []
    assert [v for l, v in samples(text, "DCGM_FI_DEV_GPU_UTIL") if l["gpu"] == "0"] == [50]
