"""A failing GPU, a missing kubelet socket, pods that come and go, Xids and MIG: the exporter keeps telling the truth."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from fakenode import REPO, samples, scrape, wait_until

MIB = 1 << 20


def value(text: str, name: str, **labels: str) -> float | None:
    found = [v for l, v in samples(text, name) if all(l.get(k) == want for k, want in labels.items())]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def test_a_lost_gpu_keeps_its_last_values_marked_stale_and_the_others_go_on(fake_node, run_exporter):
    node = fake_node()
    node.faults.set_utilization(2, 77)
    node.faults.set_utilization(0, 10)
    url = run_exporter(node)
    wait_until(lambda: value(scrape(url), "DCGM_FI_DEV_GPU_UTIL", gpu="2") == 77, what="GPU 2 read")
    before = scrape(url)
    node.faults.lose_gpu(2)
    node.faults.set_utilization(0, 55)
    after = wait_until(lambda: (t := scrape(url)) and value(t, "tessera_gpu_stale", gpu="2") == 1 and t,
                       what="GPU 2 stale")
    after = wait_until(lambda: (t := scrape(url)) and value(t, "DCGM_FI_DEV_GPU_UTIL", gpu="0") == 55 and t,
                       what="GPU 0 still collected")
    assert value(after, "DCGM_FI_DEV_GPU_UTIL", gpu="2") == 77  # last good value, not dropped, not invented
    assert value(after, "tessera_gpu_stale", gpu="0") == 0
    stamp = "tessera_gpu_last_collected_timestamp_seconds"
    later = wait_until(lambda: (t := scrape(url)) and value(t, stamp, gpu="0") > value(after, stamp, gpu="0") and t,
                       what="another collection")
    assert value(later, stamp, gpu="2") == value(after, stamp, gpu="2")  # frozen at the last good reading
    assert value(after, stamp, gpu="0") > value(before, stamp, gpu="0")
    assert value(after, "tessera_gpu_health", gpu="2", reason="gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)") == 0
    assert value(after, "tessera_gpu_xid_errors_total", gpu="2", xid="79") == 1  # fallen off the bus
    assert value(after, "DCGM_FI_DEV_XID_ERRORS", gpu="2") == 79


def test_without_the_pod_resources_socket_metrics_have_no_pod_labels_and_errors_are_counted(fake_node,
                                                                                         run_exporter):
    node = fake_node(serve=False)
    node.offer_mps([1])
    node.devices.give("uid-solo", "solo", "team", "main", "nvidia.com/mps-core",
                      [f"{node.uuid(1)}::core::{n}" for n in range(100)])
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and value(t, "tessera_exporter_podresources_errors_total") >= 2
                      and t, what="errors counted")
    assert value(text, "tessera_exporter_podresources_up") == 0
    assert {l["pod"] for l, _ in samples(text, "DCGM_FI_DEV_FB_USED")} == {""}
    assert len(samples(text, "DCGM_FI_DEV_FB_USED")) == 8
    node.pod_resources.start()  # the kubelet comes back
    text = wait_until(lambda: (t := scrape(url)) and value(t, "tessera_exporter_podresources_up") == 1 and t,
                      what="pod-resources back")
    assert value(text, "DCGM_FI_DEV_FB_USED", gpu="1") is not None
    assert [l["pod"] for l, _ in samples(text, "DCGM_FI_DEV_FB_USED") if l["gpu"] == "1"] == ["solo"]


def test_series_of_a_container_that_is_gone_are_dropped(fake_node, run_exporter):
    node = fake_node()
    node.offer_mps([0])
    cids = [node.start_mps_container(f"job-{n}", "main", 0, core=10, mem_gib=4, pid=5000 + n,
                                     gpu_pids=[5100 + n]) for n in range(5)]
    node.faults.set_processes(0, [(5100 + n, 100) for n in range(5)], mps=True)
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and len(samples(t, "tessera_container_gpu_memory_used_bytes")) == 5
                      and t, what="five containers")
    assert {l["pod"] for l, _ in samples(text, "tessera_container_gpu_memory_grant_bytes")} == {
        f"job-{n}" for n in range(5)}
    for n in range(4):
        node.stop_container(f"job-{n}", cids[n])
    node.faults.set_processes(0, [(5104, 100)], mps=True)
    text = wait_until(lambda: (t := scrape(url)) and len(samples(t, "tessera_container_gpu_memory_used_bytes")) == 1
                      and t, what="one container left")
    for name in ("tessera_container_gpu_memory_grant_bytes", "tessera_container_gpu_core_grant_ratio",
                 "tessera_container_over_grant"):
        assert [l["pod"] for l, _ in samples(text, name)] == ["job-4"], name


def test_xids_are_counted_per_gpu_and_xid(fake_node, run_exporter):
    node = fake_node()
    url = run_exporter(node)
    # NVML delivers an Xid only to event sets registered before it (so does the fake): first see one
    # counted on another GPU, so the exporter is listening before the Xids this test counts.
    def listening() -> float | None:
        node.faults.inject_xid(0, 43)  # again each time: one sent before the exporter listened is lost
        return value(scrape(url), "tessera_gpu_xid_errors_total", gpu="0", xid="43")

    wait_until(listening, what="the exporter listening for Xids")
    for _ in range(3):
        node.faults.inject_xid(5, 13)
    node.faults.inject_xid(5, 31)
    text = wait_until(lambda: (t := scrape(url)) and value(t, "tessera_gpu_xid_errors_total", gpu="5", xid="31")
                      and t, what="Xids counted")
    assert value(text, "tessera_gpu_xid_errors_total", gpu="5", xid="13") == 3
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", gpu="5") == 31
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", gpu="4") == 0


def test_mig_instances_get_their_own_memory_series_and_pod_labels_but_no_invented_utilization(fake_node,
                                                                                              run_exporter):
    node = fake_node("a100-80gb-mig.yaml")
    mig = node.description.gpus[4].mig[0]  # a 3g.40gb instance of GPU 4
    node.devices.give("uid-inf", "infer", "team", "server", "nvidia.com/mig-3g.40gb", [mig.uuid])
    node.faults.set_processes(4, [(6100, 5000)], gpu_instance_id=mig.gpu_instance_id)
    url = run_exporter(node)
    text = wait_until(lambda: (t := scrape(url)) and value(
        t, "DCGM_FI_DEV_FB_USED", gpu="4", GPU_I_ID=str(mig.gpu_instance_id)) == 5000 and t, what="MIG memory")
    series = [l for l, _ in samples(text, "DCGM_FI_DEV_FB_USED") if l["gpu"] == "4"]
    assert sorted((l["GPU_I_PROFILE"], l["pod"]) for l in series) == [("3g.40gb", ""), ("3g.40gb", "infer")]
    assert value(text, "DCGM_FI_DEV_FB_FREE", gpu="4", GPU_I_ID=str(mig.gpu_instance_id)) == 40192 - 5000
    assert samples(text, "DCGM_FI_DEV_GPU_UTIL") == []  # NVML has none in MIG mode; none is made up
    assert samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE") == []  # nor GPM before Hopper
    assert samples(text, "tessera_container_gpu_utilization_ratio") == []  # nor per-process on MIG
    assert value(text, "tessera_container_gpu_memory_grant_bytes", pod="infer") == 40192 * MIB
    assert value(text, "tessera_gpu_mode", gpu="4", mode="mig") == 1
    # the process has no hook record, so it is memory no container claims
    assert value(text, "tessera_gpu_memory_unattributed_bytes", gpu="4") == 5000 * MIB


def test_help_names_the_flags_and_healthz_answers(fake_node, run_exporter):
    out = subprocess.run([sys.executable, "-m", "exporter.main", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=30)
    assert out.returncode == 0
    for flag in ("--listen", "--pod-resources-socket", "--interval-s", "--state-dir", "--kubeconfig"):
        assert flag in out.stdout
    url = run_exporter(fake_node())
    with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b"ok\n"
