"""The Allocate response from IDs alone: device nodes or CDI names, the signed grant, MPS halves apart."""

from __future__ import annotations

from deviceplugin.response import ResponseSettings, container_response
from deviceplugin.rm import Device, Request
from tessera.gpu import MigInstance
from tessera.grant import grant_env, verify

KEY = b"k" * 64


def settings(strategy: str) -> ResponseSettings:
    return ResponseSettings("n1", KEY, strategy, "/run/mps/pipe", "/run/mps/shm")


def test_whole_gpus_as_device_nodes_with_a_grant_the_hook_accepts():
    devices = (Device("GPU-a", "nvidia.com/gpu", 2, "GPU-a", 0, gpu_minor=2),
               Device("GPU-b", "nvidia.com/gpu", 5, "GPU-b", 1, gpu_minor=5))
    response = container_response(Request("nvidia.com/gpu", ("GPU-a", "GPU-b"), devices), settings("device-nodes"), {})
    paths = [d.host_path for d in response.devices]
    assert paths[:2] == ["/dev/nvidia2", "/dev/nvidia5"] and "/dev/nvidiactl" in paths
    (key, value), = response.annotations.items()
    grant = verify(key, value, KEY)
    assert dict(response.envs) == grant_env(grant) == {"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b",
                                                        "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}
    assert not response.cdi_devices


def test_mig_as_cdi_names():
    mig = MigInstance("MIG-x", "1g.10gb", 9, 0, 9984, 16, 1, 6, 1, capability_minors=(489, 490))
    device = Device("MIG-x", "nvidia.com/mig-1g.10gb", 3, "GPU-c", 0, mig, gpu_minor=3)
    response = container_response(Request(device.resource, ("MIG-x",), (device,)), settings("cdi"), {"MIG-x": 2})
    assert [c.name for c in response.cdi_devices] == ["nvidia.com/gpu=3:2"]
    assert not response.devices and dict(response.envs)["NVIDIA_VISIBLE_DEVICES"] == "MIG-x"


def test_mps_core_and_memory_write_disjoint_keys():
    dev = (Device("GPU-a::core::0", "nvidia.com/mps-core", 0, "GPU-a", 0, gpu_minor=0),)
    core = container_response(Request("nvidia.com/mps-core", ("GPU-a::core::0",) * 1, dev, core=25),
                              settings("device-nodes"), {})
    mem = container_response(Request("nvidia.com/mps-memory", ("GPU-a::mem::0",), dev, mem_gib=1),
                             settings("device-nodes"), {})
    assert not set(core.envs) & set(mem.envs) and not set(core.annotations) & set(mem.annotations)
    assert dict(mem.envs) == {"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=1G"}
    assert dict(core.envs)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert {m.container_path for m in core.mounts} == {"/run/mps/pipe", "/dev/shm"} and not mem.mounts
