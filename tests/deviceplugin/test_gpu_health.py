"""GPU health as the kubelet sees it: Xid events injected into the fake node under a running plugin.

An application Xid changes nothing; another Xid takes the GPU and all its shares out within a
second and brings them back after the quiet period; a fatal Xid keeps the GPU out; a GPU lost from
the bus is out until it is back. (One plugin for the module; each story uses its own GPU.)
"""

from __future__ import annotations

import time

import pytest

from dpharness import plugin_on_kubelet, wait_until
from tessera.fakenvml import FaultInjector

CORE, MEM, GPU = "nvidia.com/mps-core", "nvidia.com/mps-memory", "nvidia.com/gpu"


@pytest.fixture(scope="module")
def mps_node():
    with plugin_on_kubelet("a100-80gb-mps.yaml", **{"default-mode": "mps", "xid-quiet-period-s": "1.5"}) as (
            node, manager, _):
        wait_until(lambda: manager.allocatable().get(CORE) == 800, what="800 healthy cores")
        faults = FaultInjector(node.description)
        yield manager, faults, [g.uuid for g in faults.description.gpus]


def healthy(manager, uuid: str) -> tuple[int, int]:
    """Healthy (cores, GiB) of one GPU as the kubelet sees them."""
    return tuple(sum(1 for i, h in manager.devices(r).items() if i.startswith(uuid) and h == "Healthy")
                 for r in (CORE, MEM))


def test_application_xid_changes_nothing(mps_node):
    manager, faults, uuids = mps_node
    faults.inject_xid(2, 43)  # GPU stopped processing: the application's fault
    time.sleep(1.0)
    assert healthy(manager, uuids[2]) == (100, 80)


def test_other_xid_takes_the_gpu_out_within_a_second_then_back_after_quiet_period(mps_node, eventually):
    manager, faults, uuids = mps_node
    start = time.monotonic()
    faults.inject_xid(3, 62)  # internal micro-controller halt: not application, not fatal
    eventually(lambda: healthy(manager, uuids[3]) == (0, 0), timeout=1.0,
               what="GPU 3's cores and memory unhealthy within one second", interval=0.01)
    assert time.monotonic() - start < 1.0
    assert healthy(manager, uuids[4]) == (100, 80), "other GPUs stay healthy"
    assert manager.capacity() == {CORE: 800, MEM: 640}, "capacity stays: the devices are there, unhealthy"
    eventually(lambda: healthy(manager, uuids[3]) == (100, 80), timeout=5, what="GPU 3 back after the quiet period")
    assert time.monotonic() - start >= 1.4, "back only after the quiet period"


def test_fatal_xid_keeps_the_gpu_out(mps_node, eventually):
    manager, faults, uuids = mps_node
    faults.inject_xid(1, 48)  # double-bit ECC: fatal
    eventually(lambda: healthy(manager, uuids[1]) == (0, 0), timeout=1.0, what="GPU 1 out")
    time.sleep(2.0)  # past the quiet period
    assert healthy(manager, uuids[1]) == (0, 0)


def test_lost_gpu_is_out_until_it_is_back_on_the_bus(mps_node, eventually):
    manager, faults, uuids = mps_node
    faults.lose_gpu(5)
    eventually(lambda: healthy(manager, uuids[5]) == (0, 0), timeout=1.0, what="GPU 5 out")
    time.sleep(2.0)
    assert healthy(manager, uuids[5]) == (0, 0)
    faults.restore_gpu(5)
    eventually(lambda: healthy(manager, uuids[5]) == (100, 80), timeout=5, what="GPU 5 back once it reads well")
