"""MPS shares through the simulated kubelet, with the plugin in its own process, over real sockets.

A container asking mps-core 50 and mps-memory 8 gets exactly those limits, on one GPU, in either
call order; two such share a GPU; mps-core 200 is two whole GPUs; bad requests fail with a reason.
"""

from __future__ import annotations

import pytest

from dpharness import plugin_on_kubelet, wait_until

from simcluster.kubelet.devicemanager import AdmissionError
from tessera.grant import load_key, verify

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


@pytest.fixture(scope="module")
def mps_node():
    """One 8-GPU MPS node for the module; each test admits its own pods."""
    with plugin_on_kubelet("a100-80gb-mps.yaml", **{"default-mode": "mps"}) as (node, manager, _):
        wait_until(lambda: manager.allocatable().get(CORE) == 800 and manager.allocatable().get(MEM) == 640,
                   what="mps-core 800 and mps-memory 640 registered")
        yield node, manager


def env_of(response) -> dict:
    return dict(response.envs)


def admit(manager, pod: str, core: int, mem: int, memory_first: bool):
    order = [(MEM, mem), (CORE, core)] if memory_first else [(CORE, core), (MEM, mem)]
    return {res: manager.allocate(pod, pod, "default", "main", res, n) for res, n in order}


def test_each_resource_registers_with_numa_topology(mps_node):
    node, manager = mps_node
    assert manager.capacity() == {CORE: 800, MEM: 640}
    numa = manager.healthy_devices()[CORE]
    assert all(len(nodes) == 1 for nodes in numa.values()), "every device carries its NUMA node"
    assert all(len(i) <= 63 for i in numa), "device IDs are at most 63 characters"


@pytest.mark.parametrize("memory_first", [False, True])
def test_core_and_memory_limits_on_one_gpu_in_either_order(mps_node, memory_first):
    node, manager = mps_node
    responses = admit(manager, f"p-{memory_first}", 50, 8, memory_first)
    core_env, mem_env = env_of(responses[CORE]), env_of(responses[MEM])
    assert core_env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert mem_env == {"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=8G"}, "memory writes no key core writes"
    uuid = core_env["NVIDIA_VISIBLE_DEVICES"]
    assert uuid.startswith("GPU-") and core_env["CUDA_VISIBLE_DEVICES"] == uuid
    assert core_env["CUDA_MPS_PIPE_DIRECTORY"] == str(node.mps["pipe"])
    mounts = {m.container_path: m.host_path for m in responses[CORE].mounts}
    assert mounts == {str(node.mps["pipe"]): str(node.mps["pipe"]), "/dev/shm": str(node.mps["shm"])}
    held = {a.resource: a.device_ids for a in manager.allocations() if a.pod_uid == f"p-{memory_first}"}
    assert {i.split("::")[0] for i in held[CORE]} == {uuid}
    assert {i.split("::")[0] for i in held[MEM]} == {uuid}, "memory comes from the core's GPU"
    key = load_key(str(node.grant_key))
    for resource, response in responses.items():
        (ann_key, value), = response.annotations.items()
        grant = verify(ann_key, value, key)
        assert grant.resource == resource and grant.uuids == [uuid] and grant.node == "gpu-node"
    assert {d.container_path for d in responses[CORE].devices} >= {"/dev/nvidiactl", "/dev/nvidia-uvm"}


def test_two_shares_fit_one_gpu_and_a_third_is_refused(make_node, start_plugin, kubelet, eventually):
    node = make_node("a100-80gb-mps.yaml")
    # one GPU only: keep the node small so "does not fit" is about that GPU
    node.description.write_text(node.description.read_text().replace("count: 8", "count: 1"))
    manager = kubelet(node)
    start_plugin(node, **{"default-mode": "mps"})
    eventually(lambda: manager.allocatable().get(CORE) == 100, what="one MPS GPU registered")
    first = admit(manager, "p1", 50, 8, False)
    second = admit(manager, "p2", 50, 8, True)
    assert env_of(first[CORE])["NVIDIA_VISIBLE_DEVICES"] == env_of(second[CORE])["NVIDIA_VISIBLE_DEVICES"]
    with pytest.raises(AdmissionError, match="Requested: 50, Available: 0"):
        manager.allocate("p3", "p3", "default", "main", CORE, 50)


def test_two_hundred_cores_are_two_whole_gpus(mps_node):
    node, manager = mps_node
    manager.allocate("small", "small", "default", "main", CORE, 30)  # a share elsewhere first
    responses = admit(manager, "big", 200, 160, False)
    env = env_of(responses[CORE])
    gpus = env["NVIDIA_VISIBLE_DEVICES"].split(",")
    assert len(gpus) == 2 and env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "100"
    small = {i.split("::")[0] for a in manager.allocations() if a.pod_uid == "small" for i in a.device_ids}
    assert not small & set(gpus), "whole GPUs are GPUs nobody else holds a share of"
    mem_gpus = {i.split("::")[0] for a in manager.allocations() if a.pod_uid == "big" and a.resource == MEM
                for i in a.device_ids}
    assert mem_gpus == set(gpus)
    # MPS takes a limit per device ordinal (the order of CUDA_VISIBLE_DEVICES), not one total.
    assert env_of(responses[MEM]) == {"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=80G,1=80G"}


def test_core_request_over_a_hundred_not_in_hundreds_is_refused(mps_node):
    node, manager = mps_node
    with pytest.raises(AdmissionError, match="not whole hundreds"):
        manager.allocate("odd", "odd", "default", "main", CORE, 150)
    assert not [a for a in manager.allocations() if a.pod_uid == "odd"]
