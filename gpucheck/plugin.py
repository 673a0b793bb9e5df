"""The device plugin's resource manager and Allocate answers built in-process on this machine's NVML,
the way the plugin builds them, with no kubelet and no gRPC: :class:`deviceplugin.allocator.Allocator`
over :class:`deviceplugin.rm.NodeDevices`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from deviceplugin.allocator import Allocator
from deviceplugin.response import ResponseSettings
from deviceplugin.rm import HealthTracker, NodeDevices
from tessera import RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.gpu import GpuInfo
from tessera.kubeletapi import deviceplugin_pb2 as api

__all__ = ["Answer", "MODE_RESOURCES", "PluginOnNode", "TIMESLICE_REPLICAS"]

NODE = "gpucheck-node"
TIMESLICE_REPLICAS = 4
MODE_RESOURCES = {"exclusive": (RESOURCE_GPU,), "timeslice": (RESOURCE_GPU_SHARED,),
                  "mps": (RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY)}


@dataclass(frozen=True)
class Answer:
    """One Allocate answer: its environment, device host paths, mounts and grant annotations."""

    envs: dict[str, str]
    devices: list[str]
    mounts: list[str]
    annotations: dict[str, str]

    @classmethod
    def of(cls, response: api.ContainerAllocateResponse) -> "Answer":
        return cls(dict(response.envs), [d.host_path for d in response.devices],
                   [m.host_path for m in response.mounts], dict(response.annotations))


class PluginOnNode:
    """The plugin's decisions for one mode on these GPUs."""

    def __init__(self, gpus: list[GpuInfo], mode: str, device_root: str, mps_pipe: str, mps_shm: str) -> None:
        self.key = os.urandom(32)
        self.rm = NodeDevices(gpus, default_mode=mode, gpu_modes={}, replicas=TIMESLICE_REPLICAS,
                              health=HealthTracker([], [], 0.0))
        self.settings = ResponseSettings(NODE, self.key, "device-nodes", mps_pipe, mps_shm, device_root=device_root)
        self.allocator = Allocator(self.rm, self.settings)
        self.holdings: list[tuple[str, str, str, tuple[str, ...]]] = []  # what the kubelet would say is held

    def ids(self, resource: str, gpu_uuid: str, count: int) -> list[str]:
        """The first ``count`` device IDs of ``resource`` on GPU ``gpu_uuid`` (MIG: of that instance)."""
        found = [d.id for d, _ in self.rm.listing(resource) if gpu_uuid in (d.gpu_uuid, d.visible_uuid)]
        return sorted(found)[:count]

    def allocate(self, resource: str, ids: list[str]) -> Answer:
        """Allocate's answer for one container, as the kubelet would get it."""
        return Answer.of(self.allocator.allocate(resource, ids))

    def mps_share(self, gpu_uuid: str, core: int, mem_gib: int) -> tuple[dict[str, str], list[Answer]]:
        """The environment an MPS share gets (core's and memory's answers merged, first wins) and both answers;
        the share is then held (as the kubelet's pod-resources would say), so it counts in the daemon defaults."""
        core_ids = self.ids(RESOURCE_MPS_CORE, gpu_uuid, core)
        mem_ids = self.ids(RESOURCE_MPS_MEMORY, gpu_uuid, mem_gib)
        core_answer = self.allocate(RESOURCE_MPS_CORE, core_ids)
        mem_answer = self.allocate(RESOURCE_MPS_MEMORY, mem_ids)
        container = f"share-{len(self.holdings) // 2}"
        self.holdings += [("gpucheck", container, RESOURCE_MPS_CORE, tuple(core_ids)),
                          ("gpucheck", container, RESOURCE_MPS_MEMORY, tuple(mem_ids))]
        self.rm.set_holdings(self.holdings)
        return {**mem_answer.envs, **core_answer.envs}, [core_answer, mem_answer]
