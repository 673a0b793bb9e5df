"""Which recorded outages a restarted plugin carries over, and how a carried-over GPU comes back."""

from __future__ import annotations

from deviceplugin.healthrecord import ANNOTATION_CLEAR_HEALTH, fatal_outages, clear_request
from deviceplugin.rm import HealthTracker
from tessera import ANNOTATION_INVENTORY
from tessera.inventory import GpuHealth, GpuInventory, NodeInventory

FATAL = [48, 63, 64, 79, 94, 95]


def node_with(*healths: GpuHealth, extra: dict | None = None) -> dict:
    gpus = tuple(GpuInventory(i, f"GPU-{i}", "Tesla T4", 15360, 40, "exclusive", h) for i, h in enumerate(healths))
    annotations = {ANNOTATION_INVENTORY: NodeInventory("n", gpus).to_json(), **(extra or {})}
    return {"metadata": {"name": "n", "annotations": annotations}}


def test_only_fatal_xids_are_carried_over():
    node = node_with(
        GpuHealth(),
        GpuHealth(False, "fatal Xid 79", "2026-01-01T00:00:00Z"),
        GpuHealth(False, "Xid 62", "2026-01-01T00:00:01Z"),  # transient
        GpuHealth(False, "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)", "2026-01-01T00:00:02Z"),
        GpuHealth(False, "fatal Xid 48; gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)", "2026-01-01T00:00:03Z"),
        GpuHealth(False, "uncorrectable ECC error", "2026-01-01T00:00:04Z"),
    )
    assert fatal_outages(node, FATAL) == {
        "GPU-1": ("fatal Xid 79", "2026-01-01T00:00:00Z"),
        "GPU-4": ("fatal Xid 48; gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)", "2026-01-01T00:00:03Z"),
    }
    assert fatal_outages(node, [48]) == {"GPU-4": fatal_outages(node, FATAL)["GPU-4"]}, "the configured list decides"


def test_no_or_unreadable_inventory_carries_nothing():
    assert fatal_outages({}, FATAL) == {} and fatal_outages(None, FATAL) == {}
    assert fatal_outages({"metadata": {"annotations": {ANNOTATION_INVENTORY: "{not json"}}}, FATAL) == {}
    assert fatal_outages({"metadata": {"annotations": {ANNOTATION_INVENTORY: '{"version": 99}'}}}, FATAL) == {}


def test_clear_request_reads_a_comma_list():
    assert clear_request(node_with(GpuHealth())) is None
    assert clear_request(node_with(GpuHealth(), extra={ANNOTATION_CLEAR_HEALTH: " GPU-1, GPU-2 ,"})) == ["GPU-1", "GPU-2"]


def test_carried_over_gpu_needs_a_reset_or_a_clear():
    t = HealthTracker([43], FATAL, 0.0)
    assert t.carry_over(1, "fatal Xid 79", "2026-01-01T00:00:00Z")
    assert not t.carry_over(1, "fatal Xid 79", "x"), "once"
    assert t.out[1].since == "2026-01-01T00:00:00Z"
    assert not t.on_read(1, None) and not t.tick() and not t.healthy(1), "reading well is not a reset"
    t.on_read(1, "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)")
    assert not t.clear(1) and not t.healthy(1), "no clear while NVML cannot read it"
    assert t.on_read(1, None) and t.healthy(1), "lost and back: reset"
    t.carry_over(2, "fatal Xid 48", "")
    assert t.out[2].since, "a missing since gets now"
    assert t.clear(2) and t.healthy(2) and not t.clear(2)
