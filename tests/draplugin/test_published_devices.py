"""What the driver publishes: device names and attributes a CEL selector can use, and never a GPU the
device plugin's inventory lists."""

from __future__ import annotations

import copy

import pytest

from draharness import GPUS, MODES, NODE
from draplugin.devices import attributes, device_entry, select_gpus, semantic_version
from draplugin.slices import device_plugin_gpus, differences, same_content, wanted_slice
from tessera import ANNOTATION_INVENTORY
from tessera.inventory import GpuInventory, NodeInventory


@pytest.mark.parametrize("text, version", [("550.54.15", "550.54.15"), ("535.104.05", "535.104.5"),
                                           ("12.4", "12.4.0"), ("r550", None), ("", None), ("1.2.3.4", None)])
def test_driver_versions_become_semantic_versions_or_nothing(text, version):
    assert semantic_version(text) == version


def test_a_gpu_s_attributes_say_what_nvml_read_and_leave_out_what_it_did_not():
    attrs = attributes(GPUS[1], "535.104.05")
    assert attrs["uuid"] == {"string": GPUS[1].uuid} and attrs["index"] == {"int": 5}
    assert attrs["minor"] == {"int": 2} and attrs["cudaComputeCapability"] == {"version": "8.0.0"}
    assert attrs["driverVersion"] == {"version": "535.104.5"} and attrs["migEnabled"] == {"bool": False}
    assert "numaNode" not in attrs and "pciBusID" not in attrs   # the fixture's GPUs do not say
    entry = device_entry(select_gpus(GPUS, [5])[0], "")
    assert entry["name"] == "gpu-5" and entry["capacity"]["memory"] == {"value": "81920Mi"}
    assert "driverVersion" not in entry["attributes"]


def test_a_gpu_index_nvml_does_not_show_is_an_error_not_a_silence():
    with pytest.raises(ValueError, match=r"names GPU indices \[7\], but NVML shows \[4, 5, 6\]"):
        select_gpus(GPUS, [5, 7])


def test_gpus_the_device_plugin_lists_are_known_and_a_bad_inventory_lists_none():
    listed = NodeInventory(NODE, (GpuInventory(4, GPUS[0].uuid, "A100-SXM4-80GB", 81920, 108, "exclusive"),))
    node = {"metadata": {"name": NODE, "uid": "n-1", "annotations": {ANNOTATION_INVENTORY: listed.to_json()}}}
    assert device_plugin_gpus(node) == {GPUS[0].uuid}
    node["metadata"]["annotations"][ANNOTATION_INVENTORY] = "{not json"
    assert device_plugin_gpus(node) == set()
    assert device_plugin_gpus({"metadata": {"name": NODE}}) == set()


def test_the_slice_is_the_node_s_pool_and_content_compares_without_generation():
    node = {"metadata": {"name": NODE, "uid": "n-1"}}
    devices = [device_entry(g, "550.54.15") for g in select_gpus(GPUS, [4, 5])]
    first = wanted_slice(node, "gpu.tessera.io", devices, 1)
    assert first["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}
    assert first["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": NODE,
                                                       "uid": "n-1", "controller": True}
    assert same_content(first, wanted_slice(node, "gpu.tessera.io", devices, 7))
    assert not same_content(first, wanted_slice(node, "gpu.tessera.io", devices[:1], 1))


def test_an_mps_gpu_is_shared_capacity_that_refuses_what_mps_core_and_mps_memory_refuse():
    (mps,) = select_gpus(GPUS, [6], {6: "mps"})
    entry = device_entry(mps, "550.54.15")
    assert entry["allowMultipleAllocations"] is True and entry["attributes"]["mode"] == {"string": "mps"}
    assert entry["capacity"] == {
        "cores": {"value": "100", "requestPolicy": {"default": "100",
                                                    "validRange": {"min": "1", "max": "100", "step": "1"}}},
        "memory": {"value": "40Gi", "requestPolicy": {"default": "40Gi",
                                                      "validRange": {"min": "1Gi", "max": "40Gi", "step": "1Gi"}}}}
    whole = device_entry(select_gpus(GPUS, [4])[0], "")
    assert "allowMultipleAllocations" not in whole and whole["attributes"]["mode"] == {"string": "exclusive"}


def test_a_mode_for_a_gpu_the_driver_does_not_publish_is_an_error():
    with pytest.raises(ValueError, match=r"gives modes for GPU indices \[4\], which draplugin.gpus does not list"):
        select_gpus(GPUS, [6], {4: "mps", 6: "mps"})


def test_quantities_the_api_server_wrote_in_canonical_form_are_no_change():
    """kube-apiserver stores 81920Mi as 80Gi: read back, the slice must not look changed, or the driver
    would rewrite it on each of its own MODIFIED events (seen on the real tier before this was known)."""
    node = {"metadata": {"name": NODE, "uid": "n-1"}}
    wanted = wanted_slice(node, "gpu.tessera.io", [device_entry(g, "") for g in select_gpus(GPUS, [4, 6], MODES)], 1)
    stored = copy.deepcopy(wanted)
    stored["spec"]["devices"][0]["capacity"]["memory"]["value"] = "80Gi"
    stored["spec"]["devices"][1]["capacity"]["memory"]["requestPolicy"]["validRange"]["max"] = "40960Mi"
    assert differences(stored, wanted) == []
    stored["spec"]["devices"][1]["capacity"]["cores"]["value"] = "99"
    stored["spec"]["devices"][0]["attributes"]["minor"] = {"int": 7}
    assert differences(stored, wanted) == ["spec.devices[gpu-4].attributes", "spec.devices[gpu-6].capacity"]


def test_a_timeslice_gpu_is_held_by_at_most_its_replicas_each_claim_taking_one():
    (ts,) = select_gpus(GPUS[:1], [GPUS[0].index], {GPUS[0].index: "timeslice"}, timeslice_replicas=3)
    entry = device_entry(ts, "550.54.15")
    assert entry["allowMultipleAllocations"] is True and entry["attributes"]["mode"] == {"string": "timeslice"}
    assert entry["capacity"] == {"replicas": {"value": "3", "requestPolicy": {
        "default": "1", "validRange": {"min": "1", "max": "1"}}}}
    assert entry["attributes"]["memoryMiB"] == {"int": GPUS[0].memory_total_mib}
