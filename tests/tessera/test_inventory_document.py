"""The node inventory annotation: what the plugin writes is what the extender reads, bad documents refused."""

from __future__ import annotations

import json

import pytest

from tessera.inventory import GpuHealth, GpuInventory, InventoryError, MigSlot, NodeInventory


def sample() -> NodeInventory:
    return NodeInventory(node="gpu-1", gpus=(
        GpuInventory(index=0, uuid="GPU-aaaa", model="NVIDIA A100-SXM4-80GB", memory_mib=81920, sm_count=108,
                     mode="mps", numa_node=0, nvlink_peers=(1,)),
        GpuInventory(index=1, uuid="GPU-bbbb", model="NVIDIA H100 80GB HBM3", memory_mib=81559, sm_count=132,
                     mode="mig", health=GpuHealth(False, "xid 79: fallen off the bus", "2026-11-23T00:00:00Z"),
                     mig=(MigSlot("3g.40gb", "MIG-cccc", 2, 0, 40448, 60, 4, 4),), pending_mode="mps"),
    ))


def test_round_trip():
    inv = sample()
    assert NodeInventory.from_json(inv.to_json()) == inv
    assert inv.gpus[0].memory_gib == 80


def test_document_is_stable_and_versioned():
    doc = json.loads(sample().to_json())
    assert doc["version"] == 1
    assert doc["gpus"][1]["health"] == {"healthy": False, "reason": "xid 79: fallen off the bus",
                                        "since": "2026-11-23T00:00:00Z"}
    assert sample().to_json() == sample().to_json()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.pop("node"), "inventory.node: missing"),
    (lambda d: d["gpus"][0].update(mode="shared"), "inventory.gpus[0].mode: 'shared' is not one of"),
    (lambda d: d["gpus"][0].update(memory_mib="80GB"), "inventory.gpus[0].memory_mib: '80GB' has the wrong type"),
    (lambda d: d["gpus"][1]["mig"][0].pop("uuid"), "inventory.gpus[1].mig[0].uuid: missing"),
    (lambda d: d["gpus"][0].update(index=True), "inventory.gpus[0].index: True is not a number"),
])
def test_bad_documents_are_refused_by_field(mutate, message):
    doc = json.loads(sample().to_json())
    mutate(doc)
    with pytest.raises(InventoryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NodeInventory.from_dict(doc)


def test_not_json():
    with pytest.raises(InventoryError, match="not JSON"):
        NodeInventory.from_json("{oops")
