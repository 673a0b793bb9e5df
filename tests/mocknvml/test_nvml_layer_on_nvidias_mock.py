"""Tessera's NVML layer on NVIDIA's mock libnvidia-ml.so: pynvml's real ctypes calls into a C library that
Tessera did not write, so function signatures, struct layouts and the driver's error codes are checked,
not Tessera's own idea of them (its fake replaces pynvml's Python functions and so never sees them).

Every expected value is read from the profile the test hands the mock. Each test runs Tessera in a child
process (a process that has loaded a libnvidia-ml.so cannot unload it, and the others must see none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mockprofile import MIB, REPO, bus_id, h100_profile, mock_env, numa_of, write_profile

PROBE = REPO / "tests" / "mocknvml" / "probe.py"
MINORS = [2, 0, 3, 1]  # index i's device node is /dev/nvidia<MINORS[i]>


def probe(mock, profile_path, *args: str) -> dict:
    env = {**os.environ, **mock_env(mock, profile_path), "PYTHONPATH": str(REPO)}
    env.pop("TESSERA_FAKE_NVML", None)
    done = subprocess.run([sys.executable, str(PROBE), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_inventory_is_the_profiles_gpus_with_their_own_minor_numbers(mock_nvml, tmp_path):
    profile = h100_profile(mock_nvml, MINORS)
    seen = probe(mock_nvml, write_profile(tmp_path / "h100.yaml", profile), "inventory")

    assert (seen["driver"], seen["cuda"]) == (profile["system"]["driver_version"], profile["system"]["cuda_version"])
    defaults = profile["device_defaults"]
    cc = defaults["compute_capability"]
    want = [{"index": d["index"], "uuid": d["uuid"], "name": defaults["name"], "minor_number": d["minor_number"],
             "memory_total_mib": defaults["memory"]["total_bytes"] // MIB, "pci_bus_id": bus_id(d["pci"]["bus_id"]),
             "numa_node": numa_of(profile, d["pci"]["bus_id"]), "compute_capability": [cc["major"], cc["minor"]],
             "mig_capable": True, "mig_enabled": False, "error": None}
            for d in profile["devices"]]
    got = [{k: g[k] for k in want[0]} for g in seen["gpus"]]
    assert got == want
    assert [g["minor_number"] for g in seen["gpus"]] != [g["index"] for g in seen["gpus"]]
    # every GPU sees every other over NVLink through the switches, with the profile's link count
    for g in seen["gpus"]:
        peers = {p["uuid"]: p for p in g["nvlink_peers"]}
        assert set(peers) == {d["uuid"] for d in profile["devices"]} - {g["uuid"]}
        assert {(p["links"], p["via_switch"]) for p in peers.values()} == {(profile["nvlink"]["links_per_gpu"], True)}


def test_a_sample_carries_the_profiles_telemetry_and_gpm_on_hopper(mock_nvml, tmp_path):
    profile = h100_profile(mock_nvml, MINORS)
    seen = probe(mock_nvml, write_profile(tmp_path / "h100.yaml", profile), "inventory")

    d = profile["device_defaults"]
    memory = d["memory"]
    for s in seen["samples"]:
        assert s["error"] is None
        assert (s["temperature_c"], s["power_w"], s["sm_clock_mhz"]) == (
            d["thermal"]["temperature_gpu_c"], d["power"]["current_draw_mw"] / 1000, d["clocks"]["sm_current"])
        assert (s["gpu_util_pct"], s["memory_util_pct"]) == (d["utilization"]["gpu"], d["utilization"]["memory"])
        assert (s["memory_used_mib"], s["memory_free_mib"]) == (memory["used_bytes"] // MIB, memory["free_bytes"] // MIB)
        c = s["counters"]
        assert (c["memory_clock_mhz"], c["memory_temperature_c"], c["energy_mj"], c["memory_reserved_mib"]) == (
            d["clocks"]["memory_current"], d["thermal"]["temperature_memory_c"],
            d["power"]["total_energy_consumption_mj"], memory["reserved_bytes"] // MIB)
        assert s["ecc"] == {"volatile_corrected": 0, "volatile_uncorrected": 0, "aggregate_corrected": 0,
                            "aggregate_uncorrected": 0}
        assert s["gpm"] is not None, "Hopper answers GPM from the second sample on"


def test_a_gpu_that_falls_off_the_bus_sends_xid_79_and_reads_as_lost_while_the_others_read(mock_nvml, tmp_path):
    lost = {"mode": "fallen_off_bus", "after_calls": 40, "xid": {"code": 79}}
    profile = h100_profile(mock_nvml, MINORS, lost={2: lost})
    seen = probe(mock_nvml, write_profile(tmp_path / "h100.yaml", profile), "events", "50")

    gpu2 = profile["devices"][2]["uuid"]
    assert [(e["kind"], e["gpu_index"], e["gpu_uuid"], e["xid"]) for e in seen["events"]] == [("xid", 2, gpu2, 79)]
    assert seen["read_errors"] == {"2": "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)"}
    assert set(seen["sample_errors"]) == {"2"}


@pytest.mark.xfail(strict=True, reason=(
    "NVIDIA's mock answers nvmlDeviceGetComputeRunningProcesses' size query (a NULL buffer) with SUCCESS and "
    "the count, where the real driver answers NVML_ERROR_INSUFFICIENT_SIZE; pynvml reads SUCCESS as 'no "
    "processes', so no NVML client sees the mock's processes (k8s-test-infra 3b2b865d, bridge/device.go). "
    "Strict: this test starts passing, and says so, once the mock answers as the driver does."))
def test_the_processes_on_a_gpu_are_read_with_their_memory(mock_nvml, tmp_path):
    profile = h100_profile(mock_nvml, MINORS)
    profile["devices"][1]["processes"] = [{"pid": 4101, "type": "C", "used_memory_mib": 6000},
                                          {"pid": 4102, "type": "C", "used_memory_mib": 2000}]
    seen = probe(mock_nvml, write_profile(tmp_path / "h100.yaml", profile), "inventory")
    got = {(p["pid"], p["used_memory_mib"]) for p in seen["samples"][1]["processes"]}
    assert got == {(4101, 6000), (4102, 2000)}
