"""An unhealthy GPU's devices are tainted in the driver's ResourceSlice (the device plugin's health rules:
application Xids ignored, others out for a quiet period, fatal ones until a reset), and only the driver's
own GPUs count."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from draplugin.health import DeviceHealth, label_value
from draplugin.slices import differences, wanted_slice
from tessera import fakenvml
from tessera.fakenvml.control import FaultInjector
from tessera.gpu import GpuEvent, GpuInfo
from tessera.gpuhealth import HealthTracker
from tessera.nvml import Nvml

sys.path.insert(0, str(Path(__file__).parents[1] / "tessera"))
from fakegpu import write_node  # noqa: E402

KEY = "gpu.tessera.io/unhealthy"


def xid(index: int, number: int) -> GpuEvent:
    return GpuEvent("xid", index, f"GPU-{index}", xid=number)


def watcher() -> DeviceHealth:
    return DeviceHealth(None, [5, 6], HealthTracker([43], [48, 79], 300.0, component="draplugin"), "gpu.tessera.io",
                        "NoSchedule", lambda: None)


@pytest.mark.parametrize("reason, value", [("fatal Xid 79", "fatal-xid-79"), ("uncorrectable ECC error",
                                                                              "uncorrectable-ecc-error"),
                                           ("gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)",
                                            "gpu-lost-from-the-bus-nvml-error-gpu-is-lost"), ("", "unknown"),
                                           ("x" * 80 + "-", "x" * 63)])
def test_a_reason_becomes_a_label_value(reason, value):
    assert label_value(reason) == value


def test_an_xid_taints_its_gpu_and_an_application_xid_or_another_gpu_does_not():
    health = watcher()
    assert health.check([xid(5, 43), xid(2, 79)], None) is False
    assert health.taints(5) == [] and health.taints(2) == []
    assert health.check([xid(5, 79)], None) is True
    (taint,) = health.taints(5)
    assert (taint["key"], taint["value"], taint["effect"]) == (KEY, "fatal-xid-79", "NoSchedule")
    assert taint["timeAdded"].endswith("Z") and health.taints(6) == []
    # fatal: back only once NVML failed to read it and then read it well (a reset)
    assert health.check([], [GpuInfo(5, "GPU-5")]) is False and health.taints(5)
    assert health.check([], [GpuInfo(5, "GPU-5", error="gpu lost from the bus")]) is True
    assert health.check([], [GpuInfo(5, "GPU-5")]) is True and health.taints(5) == []


def test_a_non_fatal_xid_comes_back_after_its_quiet_period():
    now = [1000.0]
    health = DeviceHealth(None, [5, 6], HealthTracker([43], [48, 79], 300.0, clock=lambda: now[0],
                                                      component="draplugin"), "gpu.tessera.io", "NoSchedule", lambda: None)
    assert health.check([xid(6, 32)], None) is True and health.taints(6)[0]["value"] == "xid-32"
    now[0] += 299
    assert health.check([], None) is False and health.taints(6)
    now[0] += 2
    assert health.check([], None) is True and health.taints(6) == []


def test_a_taint_s_time_stamp_is_no_change_but_its_value_and_effect_are():
    node = {"metadata": {"name": "n1", "uid": "u"}}
    device = {"name": "gpu-5", "attributes": {}, "taints": [{"key": KEY, "value": "fatal-xid-79", "effect": "NoSchedule"}]}
    wanted = wanted_slice(node, "gpu.tessera.io", [device], 1)
    held = wanted_slice(node, "gpu.tessera.io", [{**device, "taints": [{**device["taints"][0],
                                                                        "timeAdded": "2026-12-07T10:00:00Z"}]}], 1)
    assert differences(held, wanted) == []
    other = wanted_slice(node, "gpu.tessera.io", [{**device, "taints": [{**device["taints"][0], "effect": "NoExecute"}]}], 1)
    assert differences(held, other) == ["spec.devices[gpu-5].taints"]
    assert differences(wanted_slice(node, "gpu.tessera.io", [{"name": "gpu-5", "attributes": {}}], 1), wanted) == [
        "spec.devices[gpu-5].taints"]


def test_the_watch_thread_sees_a_gpu_fall_off_the_bus_on_the_fake_node_and_come_back(tmp_path):
    path = write_node(tmp_path, {"node": "n1", "gpus": [{"model": "A100-SXM4-40GB", "count": 7}]})
    fakenvml.install(path)
    changes = threading.Semaphore(0)
    with Nvml() as nvml:
        health = DeviceHealth(nvml, [5, 6], HealthTracker([43], [48, 79], 300.0, component="draplugin"),
                              "gpu.tessera.io", "NoExecute", changes.release, event_wait_s=0.05, read_interval_s=0.05)
        health.start()
        try:
            FaultInjector(path).lose_gpu(5)
            assert changes.acquire(timeout=60), "no health change after the GPU was lost"
            assert health.taints(5)[0]["effect"] == "NoExecute" and health.taints(6) == []
            FaultInjector(path).restore_gpu(5)
            while health.taints(5):   # progress: each change is one acquire; give up only if none comes
                assert changes.acquire(timeout=60), "the GPU never came back after its reset"
        finally:
            health.stop()
    fakenvml.uninstall()
