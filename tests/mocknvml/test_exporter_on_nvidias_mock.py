"""The exporter, a real process on NVIDIA's mock libnvidia-ml.so, scraped over HTTP: each DCGM_* series
carries the value and the labels the profile gives the mock (as dcgm-exporter's would on that node), and
a GPU that falls off the bus shows its Xid while the other GPUs stay served."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mockprofile import MIB, bus_id, h100_profile, mock_env, write_profile
from simcluster.exporter_launch import wait_ready
from simcluster import poll_until
from simcluster.processes import stop_process
from tessera.daemonproc import free_port, spawn_daemon

MINORS = [2, 0, 3, 1]


@pytest.fixture
def exporter(tmp_path):
    procs = []

    def start(mock, profile_path) -> str:
        listen = f"127.0.0.1:{free_port('127.0.0.1')}"
        args = ["--listen", listen, "--pod-resources-socket", str(tmp_path / "no-kubelet.sock"),
                "--state-dir", str(tmp_path / "state"), "--overuse-dir", str(tmp_path / "overuse"),
                "--interval-s", "0.2", "--node-name", "mock-h100", "--kubeconfig", "", "--log-format", "json"]
        env = {**mock_env(mock, profile_path), "TESSERA_FAKE_NVML": ""}
        proc = spawn_daemon("exporter.main", args, str(tmp_path / "exporter.log"), env)
        proc.listen = listen
        procs.append(proc)
        return wait_ready(proc, timeout_s=60)

    yield start
    for proc in procs:
        stop_process(proc, 5.0)


def scrape(url: str) -> dict[str, dict[str, tuple[dict, float]]]:
    """``{series name: {gpu: (labels, value)}}`` for the per-GPU series of one scrape."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "gpu" in sample.labels:
                out.setdefault(sample.name, {})[sample.labels["gpu"]] = (sample.labels, sample.value)
    return out


def test_every_dcgm_series_has_the_profiles_value_and_labels(mock_nvml, tmp_path, exporter):
    profile = h100_profile(mock_nvml, MINORS)
    url = exporter(mock_nvml, write_profile(tmp_path / "h100.yaml", profile))
    series = poll_until(lambda: (s := scrape(url)).get("DCGM_FI_PROF_SM_OCCUPANCY") and s, 60, 0.2,
                        "GPM series (the exporter's second sample)")

    d = profile["device_defaults"]
    want = {"DCGM_FI_DEV_GPU_TEMP": d["thermal"]["temperature_gpu_c"],
            "DCGM_FI_DEV_MEMORY_TEMP": d["thermal"]["temperature_memory_c"],
            "DCGM_FI_DEV_POWER_USAGE": d["power"]["current_draw_mw"] / 1000,
            "DCGM_FI_DEV_SM_CLOCK": d["clocks"]["sm_current"], "DCGM_FI_DEV_MEM_CLOCK": d["clocks"]["memory_current"],
            "DCGM_FI_DEV_GPU_UTIL": d["utilization"]["gpu"], "DCGM_FI_DEV_MEM_COPY_UTIL": d["utilization"]["memory"],
            "DCGM_FI_DEV_FB_USED": d["memory"]["used_bytes"] // MIB, "DCGM_FI_DEV_FB_FREE": d["memory"]["free_bytes"] // MIB,
            "DCGM_FI_DEV_FB_RESERVED": d["memory"]["reserved_bytes"] // MIB,
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": d["power"]["total_energy_consumption_mj"],
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": d["pcie"]["replay_counter"],
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": 0, "DCGM_FI_DEV_XID_ERRORS": 0}
    gpus = {str(dev["index"]): dev for dev in profile["devices"]}
    for name, value in want.items():
        assert {gpu: v for gpu, (_, v) in series[name].items()} == {gpu: value for gpu in gpus}, name
    for gpu, (labels, _) in series["DCGM_FI_DEV_GPU_TEMP"].items():
        assert (labels["UUID"], labels["pci_bus_id"], labels["modelName"], labels["Hostname"],
                labels["DCGM_FI_DRIVER_VERSION"]) == (gpus[gpu]["uuid"], bus_id(gpus[gpu]["pci"]["bus_id"]), d["name"],
                                                     "mock-h100", profile["system"]["driver_version"])
    for name in ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_OCCUPANCY",  # dcgm-exporter's default profiling set
                 "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"):
        assert set(series.get(name, {})) == set(gpus), f"{name}: GPM on Hopper, every GPU"


def test_a_gpu_that_falls_off_the_bus_shows_xid_79_and_the_others_stay_served(mock_nvml, tmp_path, exporter):
    lost = {"mode": "fallen_off_bus", "after_calls": 200, "xid": {"code": 79}}
    profile = h100_profile(mock_nvml, MINORS, lost={2: lost})
    url = exporter(mock_nvml, write_profile(tmp_path / "h100.yaml", profile))

    def xid_seen():
        s = scrape(url)
        labels, value = s.get("DCGM_FI_DEV_XID_ERRORS", {}).get("2", ({}, 0))
        return s if value == 79 else None

    series = poll_until(xid_seen, 60, 0.2, "Xid 79 on GPU 2")
    labels, _ = series["DCGM_FI_DEV_XID_ERRORS"]["2"]
    assert labels["UUID"] == profile["devices"][2]["uuid"] and "fallen off the bus" in labels["err_msg"]
    temps = {gpu: v for gpu, (_, v) in series["DCGM_FI_DEV_GPU_TEMP"].items()}
    assert {g: temps.get(g) for g in ("0", "1", "3")} == {g: profile["device_defaults"]["thermal"]["temperature_gpu_c"]
                                                          for g in ("0", "1", "3")}
